"""The System view in headless Chromium: a row per measured candidate (precision x mode: ms per frame, frames/s,
agreement, gate, verdict), the winner marked with why it won, and the "Calibrate INT8" button's progress."""

from __future__ import annotations

import importlib.util
from contextlib import asynccontextmanager

import pytest

from camserver.detect import tuner as tuner_module
from camserver.detect.backends import openvino as ov
from conftest import make_config, wait_for

@asynccontextmanager
async def tuned_server(tmp_path, monkeypatch):
    """A server whose precision tuner (yolo11n.yaml on openvino at 96 px) has finished its pass."""
    from camserver.app import CamServer

    monkeypatch.setattr(tuner_module, "START_DELAY_S", 0.2)
    config = make_config(detect={"model": "yolo11n.yaml", "backend": "openvino", "imgsz": 96, "precision": "auto",
                                 "cache_dir": str(tmp_path)})
    async with CamServer.from_config(config) as server:
        await wait_for(lambda: server.tuner.state == "done", timeout=90, what="tuning finished")
        yield server


CANDIDATE_ROWS = "[...document.querySelectorAll('.candidates-table tbody tr')]"
# each row's cells as a person reads them: the text with the CSS ::before/::after it carries (the phone's units)
SEEN_CELLS = (f"{CANDIDATE_ROWS}.map((r) => [...r.cells].map((td) => {{"
              "const pseudo = (p) => { const c = getComputedStyle(td, p).content;"
              " return c === 'none' || c === 'normal' ? '' : JSON.parse(c); };"
              "return pseudo('::before') + td.innerText + pseudo('::after'); }))")


@pytest.mark.skipif(not ov.available(), reason="openvino not installed (make test installs it)")
@pytest.mark.skipif(importlib.util.find_spec("nncf") is None, reason="nncf not installed (pip install 'camserver[int8]')")
async def test_system_view_lists_every_candidate_marks_the_winner_and_calibrates_from_its_button(tmp_path, monkeypatch):
    """Every candidate the tuner has is one table row with its figures; the winner's row is marked and says why;
    the button starts a calibration whose progress shows, and on done the int8 rows carry measured figures."""
    from browser import CHROMIUM, chromium

    if CHROMIUM is None:
        pytest.skip("chromium not installed")
    async with tuned_server(tmp_path, monkeypatch) as server:
        t = server.tuner.figures()
        async with chromium(f"http://127.0.0.1:{server.http_port}/#/system") as browser:
            rows = await browser.wait(f"{CANDIDATE_ROWS}.length === {len(t['candidates'])} && "
                                      f"{CANDIDATE_ROWS}.map((r) => r.innerText)", timeout=30, what="candidate rows")
            for c, text in zip(t["candidates"], rows, strict=True):
                assert text.split("\t")[:2] == [c["precision"], c["mode"]], text
                if c["ms_per_frame"] is not None:
                    assert f"{c['ms_per_frame']}\t{1000 / c['ms_per_frame']:.1f}" in text, text
                else:
                    assert c["skipped"] in text
            winner = await browser.js("document.querySelector('.candidate-winner').dataset.candidate")
            assert winner == f"{t['winner']}/{t['mode']}"
            assert "winner: fastest passing the gate" in await browser.js(
                "document.querySelector('.candidate-winner').innerText")
            await browser.screenshot("system-candidates", ready="(document.querySelector('.candidates-table')"
                                     ".scrollIntoView(), true)")
            await browser.click("#calibrate-int8")
            await browser.wait("/Calibration cal-1: (collecting|quantizing)/.test("
                               "document.getElementById('calibrate-status').innerText)", timeout=30, what="progress")
            await browser.screenshot("system-calibrating", ready="(document.getElementById('calibrate-status')"
                                     ".scrollIntoView(), true)")
            await browser.wait("/cal-1: done/.test(document.getElementById('calibrate-status').innerText)",
                               timeout=180, what="calibration done")
            await wait_for(lambda: server.tuner.state == "done", timeout=60, what="the tuning with int8")
            int8 = await browser.wait(f"{CANDIDATE_ROWS}.filter((r) => r.dataset.candidate.startsWith('int8/'))"
                                      ".map((r) => r.innerText).filter((t) => /\\t\\d+(\\.\\d+)?\\t/.test(t)).length === 3",
                                      timeout=30, what="int8 rows measured")
            assert int8
            await browser.screenshot("system-calibrated", ready="(document.querySelector('.candidates-table')"
                                     ".scrollIntoView(), true)")
            assert browser.errors == []


@pytest.mark.skipif(not ov.available(), reason="openvino not installed (make test installs it)")
async def test_candidate_rows_read_agreement_to_3_decimals_and_a_skipped_row_says_why_on_desktop_and_phone(
        tmp_path, monkeypatch):
    """At 1400x1000 and at 390x844 every measured row gives its agreement with 3 decimals (1.000, not 1) and a
    skipped row (int8 with no calibrated model, and whatever this CPU lacks) reads "skipped: <reason>" in one cell,
    with no unit after a dash ("– ms" on the phone)."""
    from browser import CHROMIUM, DESKTOP, PHONE, chromium

    if CHROMIUM is None:
        pytest.skip("chromium not installed")
    async with tuned_server(tmp_path, monkeypatch) as server:
        t = server.tuner.figures()
        assert any(c["skipped"] for c in t["candidates"]) and any(c["agreement"] is not None for c in t["candidates"])
        async with chromium(f"http://127.0.0.1:{server.http_port}/#/system") as browser:
            for size in (DESKTOP, PHONE):
                await browser.viewport(size)
                rows = await browser.wait(f"{CANDIDATE_ROWS}.length === {len(t['candidates'])} && {SEEN_CELLS}",
                                          timeout=30, what=f"candidate rows at {size}")
                for c, cells in zip(t["candidates"], rows, strict=True):
                    seen = " ".join(cells)
                    assert "– ms" not in seen and "– fps" not in seen, (size, cells)
                    if c["skipped"]:
                        assert cells == [c["precision"], c["mode"], f"skipped: {c['skipped']}"], (size, cells)
                        continue
                    assert len(cells) == 7, (size, cells)
                    if c["agreement"] is not None:
                        assert cells[4] == ("agreement " if size == PHONE else "") + f"{c['agreement']:.3f}", cells
            await browser.screenshot("system-candidate-rows", ready="(document.querySelector('.candidates-table')"
                                     ".scrollIntoView(), true)")
            assert browser.errors == []
