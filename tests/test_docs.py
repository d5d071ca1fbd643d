"""The docs site: the generated reference pages are current and complete, what they say of the HTTP API is
what the server does, and `mkdocs build --strict` passes with no warning."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import aiohttp
import pytest

from camserver import docsgen
from camserver.config import tables as t
from camserver.docsgen.__main__ import main as docsgen_main
from camserver.docsgen.config_ref import all_keys
from camserver.docsgen.http_ref import ADMIN, PUBLIC, VIEWER, routes
from conftest import FakeDetector, running_server

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"
TOKEN, ADMIN_TOKEN = "viewer-token-123", "admin-token-456"
MAX_SCREENSHOT_BYTES = 160 * 1024


def test_generated_reference_pages_are_up_to_date():
    """Every committed page under docs/reference/ that the code generates is exactly what it generates now."""
    stale = [name for name, text in docsgen.render().items()
             if not (REFERENCE / name).exists() or (REFERENCE / name).read_text() != text]
    assert not stale, f"stale generated pages: {', '.join(stale)}; run `python -m camserver.docsgen` and commit them"


def test_docsgen_check_finds_a_missing_or_edited_page(tmp_path, capsys):
    """`python -m camserver.docsgen --check` fails on a missing page and on a page edited by hand, passes after a write."""
    assert docsgen_main(["--out", str(tmp_path), "--check"]) == 1
    assert not list(tmp_path.iterdir()), "--check writes nothing"
    assert docsgen_main(["--out", str(tmp_path)]) == 0
    assert docsgen_main(["--out", str(tmp_path), "--check"]) == 0
    page = tmp_path / "configuration.md"
    page.write_text(page.read_text().replace("`ingest.port` | integer | `3001`", "`ingest.port` | integer | `3002`"))
    assert docsgen_main(["--out", str(tmp_path), "--check"]) == 1
    assert "configuration.md" in capsys.readouterr().out


def _toml_keys(data: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and name not in ("http.users",):
            keys |= _toml_keys(value, name + ".")
        else:
            keys.add(name)
    return keys


def test_config_reference_lists_every_key_of_config_toml_and_of_the_tables():
    """The configuration reference names every key config.toml sets or shows commented, and every field of every
    table's model."""
    page = (REFERENCE / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", page, re.M))
    text = (ROOT / "config.toml").read_text()
    in_file = _toml_keys(tomllib.loads(text))
    # the commented examples: [[webhooks]], [[notify]], [[events.zones]] ..., [events.filters.person],
    # [cameras.door.motion]: their keys as the reference names them
    table = None
    for line in text.splitlines():
        line = line.strip()
        if m := re.match(r"^#? ?\[\[([a-z_.]+)\]\]", line):
            table = m.group(1) + "[]"
        elif m := re.match(r"^#? ?\[events\.filters\.[a-z_]+\]", line):
            table = "events.filters.<label>"
        elif m := re.match(r"^#? ?\[cameras\.[a-z_-]+\.(motion|settings)\]", line):
            in_file.add(f"cameras.<id>.{m.group(1)}")
            table = None
        elif re.match(r"^#? ?\[[a-z_.]+\]", line):
            table = None
        elif table and (m := re.match(r"^#? ?([a-z_]+) *=", line)):
            in_file.add(f"{table}.{m.group(1)}")
    fields = set()
    for section, cls in (("ingest", t.IngestConfig), ("http", t.HttpConfig), ("detect", t.DetectConfig),
                         ("events", t.EventsConfig), ("motion", t.MotionConfig), ("storage", t.StorageConfig),
                         ("record", t.RecordConfig), ("mqtt", t.MqttConfig), ("log", t.LogConfig),
                         ("webhooks[]", t.WebhookConfig), ("notify[]", t.NotifyConfig)):
        fields |= {f"{section}.{name}" for name in cls.model_fields}
    assert in_file, "config.toml has keys"
    missing = sorted(k for k in in_file | fields if k not in documented)
    assert not missing, f"not in docs/reference/configuration.md: {', '.join(missing)}"


def test_every_config_key_has_a_description_from_its_model():
    """Each key of the reference has a description, and it is the `Field(description=...)` of its model."""
    keys = {k.name: k for k in all_keys()}
    undocumented = sorted(name for name, k in keys.items() if not k.doc)
    assert not undocumented, f"add description= to the Field of: {', '.join(undocumented)}"
    assert keys["ingest.port"].doc == t.IngestConfig.model_fields["port"].description
    assert keys["events.zones[].points"].doc == t.ZoneConfig.model_fields["points"].description
    assert keys["http.users.<name>.role"].doc == t.UserConfig.model_fields["role"].description
    assert keys["cameras.<id>.settings"].doc == t.CameraTables.model_fields["settings"].description
    assert "http.users.<name>.name" not in keys  # a user's name is its key in [http.users], not a key of its own


def test_config_reference_takes_defaults_and_allowed_values_from_the_code():
    """A key's default is the model's default and its allowed values are the loader's own words (choices, ranges)."""
    keys = {k.name: k for k in all_keys()}
    assert keys["ingest.port"].default == "3001" and keys["ingest.port"].allowed == "an integer from 0 to 65535"
    assert keys["record.mode"].allowed == "one of off, events, motion, continuous"
    assert keys["detect.backend"].allowed == "one of " + ", ".join(t.BACKENDS)
    assert keys["record.x264_params"].default == f'"{t.DEFAULT_X264_PARAMS}"'
    assert keys["events.zones[].points"].default == "required"


def _url(base: str, path: str) -> str:
    return base + path.replace("{camera_id}", "door").replace("{event_id}", "0-none").replace(
        "{name}", "none.bin").replace("{token}", "none")


async def test_http_reference_says_who_may_call_each_route_as_the_server_does():
    """Through a real server with a viewer and an admin token: every route the reference calls 'anyone' answers
    without a credential, every 'viewer' route is 401 without one, every 'admin' route is 403 with a viewer's."""
    table = list(routes())
    assert {who for _, _, who, _ in table} >= {PUBLIC, VIEWER, ADMIN}
    page = (REFERENCE / "http-api.md").read_text()
    async with running_server(FakeDetector(), http={"token": TOKEN, "admin_token": ADMIN_TOKEN},
                              cameras={"ids": ["door"]}) as srv:
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            for method, path, who, _ in table:
                assert f"| `{method}` | `{path}` | {who} |" in page, (method, path)
                url = _url(srv.http, path)
                if who.startswith(PUBLIC):
                    if method != "GET":
                        continue  # login and logout: a wrong body is their own 400/401, not the auth layer's
                    async with http.request(method, url) as resp:
                        assert resp.status != 401, (method, path, resp.status)
                elif who == VIEWER:
                    async with http.request(method, url) as resp:
                        assert resp.status == 401, (method, path, resp.status)
                else:
                    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
                    async with http.request(method, url, headers=headers, data=b"{}") as resp:
                        assert resp.status == 403, (method, path, resp.status)


def test_docs_home_links_the_two_commands_the_firmware_and_home_assistant():
    """A newcomer reaches the two commands, the firmware steps and the Home Assistant guide in one click."""
    home = (DOCS / "index.md").read_text()
    for target in ("getting-started/install.md", "firmware.md", "guides/home-assistant.md"):
        assert f"]({target})" in home, target
    assert "make run" in (DOCS / "getting-started/install.md").read_text()
    assert "make test" in (DOCS / "getting-started/install.md").read_text()
    firmware = (DOCS / "firmware.md").read_text()
    for part in ("## Wiring", "## Build and flash", "PlatformIO", "Arduino IDE", "## Troubleshooting"):
        assert part in firmware, part


def _relative_links(text: str) -> list[str]:
    """The targets of a Markdown text's relative links and images (no URL scheme, no bare anchor)."""
    return [m.split("#")[0] for m in re.findall(r"\]\(([^)\s]+)\)", text)
            if not re.match(r"[a-z]+:", m) and not m.startswith("#")]


def test_readme_is_the_front_door():
    """README.md stays short (at most 150 lines) and says what camserver is, shows the page, gives the two
    commands, the first run and the model fallback, where the docs are and how to serve them, and the licence."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150, f"README.md has {len(text.splitlines())} lines: move the detail to docs/"
    for part in ("make run", "make test", "make docs", "## The first run", "yolo11n.yaml", "random weights",
                 "make demo", "## Licence"):
        assert part in text, part
    links = _relative_links(text)
    assert any(link.startswith("docs/assets/screenshots/") for link in links), "a screenshot of the page"
    for page in ("docs/index.md", "docs/firmware.md", "docs/guides/home-assistant.md",
                 "docs/getting-started/install.md", "docs/reference/configuration.md"):
        assert page in links, page


def test_firmware_readme_points_to_the_docs_page():
    """firmware/README.md is one short paragraph and the link to the docs' firmware page, which holds the guide."""
    text = (ROOT / "firmware" / "README.md").read_text()
    assert len(text.splitlines()) <= 30, "the firmware guide lives in docs/firmware.md"
    assert "../docs/firmware.md" in _relative_links(text)


def test_every_relative_link_of_the_readmes_resolves():
    """Every relative link and image in README.md and firmware/README.md names a file of the repository."""
    broken = [f"{readme}: {link}" for readme in ("README.md", "firmware/README.md")
              for link in _relative_links((ROOT / readme).read_text())
              if link and not ((ROOT / readme).parent / link).exists()]
    assert not broken, broken


def test_every_code_block_of_every_page_is_closed():
    """No page has an unclosed ``` fence (one would swallow the rest of the page without a build warning)."""
    unclosed = [str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md")
                if sum(1 for line in page.read_text().splitlines() if line.lstrip().startswith("```")) % 2]
    assert not unclosed, f"unclosed code block in: {', '.join(unclosed)}"


def test_screenshots_the_docs_show_exist_and_stay_small():
    """Every screenshot a page shows is committed, and none is over ~150 KB."""
    shown = set()
    for page in DOCS.rglob("*.md"):
        shown |= {m for m in re.findall(r"assets/screenshots/([\w.-]+\.png)", page.read_text())}
    assert {"live-1400x900.png", "live-390x844.png", "camera-1400x900.png", "review-1400x900.png"} <= shown
    folder = DOCS / "assets" / "screenshots"
    for name in sorted(shown):
        assert (folder / name).exists(), f"{name}: run `make docs-screenshots`"
        assert (folder / name).stat().st_size <= MAX_SCREENSHOT_BYTES, name


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
                    reason="mkdocs-material is not installed (the docs extra: pip install -e '.[docs]')")
def test_mkdocs_build_strict_passes_without_a_warning(tmp_path):
    """`mkdocs build --strict` builds the site: no broken link, no missing page, no page outside the nav."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    assert (tmp_path / "site" / "index.html").exists()
    changelog = (tmp_path / "site" / "project" / "changelog" / "index.html").read_text()
    assert "Changelog" in changelog and "<h2" in changelog, "the changelog is made from git log"
