"""`--check-config` looks at the machine: the model file, storage.dir, detect.device, labels the model knows, zones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from camserver.config import ConfigError, load
from camserver.config.preflight import checkpoint_names, model_names, preflight

ROOT = Path(__file__).resolve().parent.parent
SHAPES = ROOT.parent / "shared" / "testdata" / "shapes-yolo11n.pt"
needs_shapes = pytest.mark.skipif(not SHAPES.exists(), reason="../shared/testdata/shapes-yolo11n.pt not beside the checkout")


def check(tmp_path: Path, toml: str) -> subprocess.CompletedProcess[str]:
    """`python -m camserver --check-config` on a config file, in tmp_path."""
    path = tmp_path / "c.toml"
    path.write_text(toml if "[storage]" in toml else f'[storage]\ndir = "{tmp_path / "data"}"\n' + toml)
    return subprocess.run([sys.executable, "-m", "camserver", "--check-config", "--config", str(path)],
                          capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ, YOLO_OFFLINE="1"),
                          timeout=60)


def test_a_missing_model_file_is_an_error(tmp_path):
    """A model path that does not exist: exit 2, one line naming detect.model."""
    result = check(tmp_path, '[detect]\nmodel = "models/best.pt"\n')
    assert result.returncode == 2, result
    assert result.stderr.strip() == "camserver: config error: detect.model = 'models/best.pt': no such file or folder"


def test_a_downloadable_model_is_a_warning_and_storage_is_left_untouched(tmp_path):
    """yolo11n.pt not on disk: a warning that it downloads; exit 0; storage.dir is tried but not created."""
    result = check(tmp_path, "")
    assert result.returncode == 0, result
    assert "warning: detect.model = 'yolo11n.pt' is not a local file" in result.stdout
    assert result.stdout.strip().endswith("configuration OK (1 warning)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]  # nothing created, nothing left behind


def test_storage_dir_that_cannot_be_created_is_an_error(tmp_path):
    """storage.dir below a file, or a file: an error naming storage.dir (tried for real: root cannot either)."""
    (tmp_path / "a-file").write_text("x")
    result = check(tmp_path, f'[storage]\ndir = "{tmp_path / "a-file" / "data"}"\n')
    assert result.returncode == 2 and "storage.dir" in result.stderr and "is not a folder" in result.stderr
    path = tmp_path / "c.toml"
    path.write_text(f'[storage]\ndir = "{tmp_path / "a-file"}"\n')
    errors, _ = preflight(load(path))
    assert [e.key for e in errors] == ["storage.dir"] and "not a folder" in str(errors[0])
    (tmp_path / "ok").mkdir()
    path.write_text(f'[storage]\ndir = "{tmp_path / "ok"}"\n[detect]\nmodel = "none"\n')
    assert preflight(load(path)) == ([], [])
    assert list((tmp_path / "ok").iterdir()) == []


@pytest.mark.parametrize("device", ["auto", "cpu", "mps", "cuda", "cuda:0", "cuda:12", "0"])
def test_valid_devices_load(tmp_path, device):
    """The devices torch and ultralytics take for one device pass."""
    path = tmp_path / "c.toml"
    path.write_text(f'[detect]\ndevice = "{device}"\n')
    assert load(path).detect.device == device


@pytest.mark.parametrize("device", ["gpu", "cuda0", "cuda:", "CPU ", "cuda:0,1", ""])
def test_a_bad_device_names_detect_device(tmp_path, device):
    """A device torch would refuse at load time is a ConfigError naming detect.device, at --check-config too."""
    path = tmp_path / "c.toml"
    path.write_text(f'[detect]\ndevice = "{device}"\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == "detect.device"
    result = check(tmp_path, f'[detect]\ndevice = "{device}"\n')
    assert result.returncode == 2 and "detect.device" in result.stderr


@needs_shapes
def test_labels_the_model_does_not_know_are_warned_about(tmp_path):
    """A typo in events.labels (or a zone's, a notify group's, a webhook's labels) is named with what the model knows."""
    toml = (f'[detect]\nmodel = "{SHAPES}"\n[events]\nlabels = ["persn", "car"]\n'
            '[[events.zones]]\ncamera = "door"\nname = "lawn"\npoints = [[0, 0], [1, 0], [1, 1]]\nlabels = ["dog"]\n'
            '[[webhooks]]\nurl = "http://127.0.0.1:9/hook"\nlabels = ["person"]\n')
    result = check(tmp_path, toml)
    assert result.returncode == 0, result
    warnings = [line for line in result.stdout.splitlines() if ": warning: " in line]
    assert warnings == [
        "camserver: warning: events.labels: 'persn' is not a label of shapes-yolo11n.pt (it knows car, person): "
        "nothing will ever match it",
        "camserver: warning: events.zones[0].labels: 'dog' is not a label of shapes-yolo11n.pt (it knows car, "
        "person): nothing will ever match it",
    ]


def test_the_default_model_knows_coco_labels_by_name(tmp_path, monkeypatch):
    """yolo11n.pt, not downloaded: its names come from ultralytics' coco.yaml, so 'persn' is warned about."""
    monkeypatch.chdir(tmp_path)
    names = model_names("yolo11n.pt")
    assert names is not None and len(names) == 80 and names[0] == "person"
    path = tmp_path / "c.toml"
    path.write_text(f'[storage]\ndir = "{tmp_path}"\n[events]\nlabels = ["persn"]\n')
    _, warnings = preflight(load(path))
    assert any("'persn' is not a label of yolo11n.pt" in w for w in warnings)


@needs_shapes
def test_checkpoint_names_are_read_without_torch():
    """The names of a .pt come out of its pickle with stand-ins: no torch import, no code run, milliseconds."""
    code = ("import sys, time; from camserver.config.preflight import checkpoint_names; t = time.process_time(); "
            f"names = checkpoint_names(__import__('pathlib').Path({str(SHAPES)!r})); "
            "print(names, 'torch' in sys.modules, time.process_time() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    names, torch_loaded, seconds = out.rsplit(" ", 2)
    assert names == "{0: 'person', 1: 'car'}" and torch_loaded == "False" and float(seconds) < 0.5


def test_names_of_an_openvino_folder_and_an_engine(tmp_path):
    """An OpenVINO export's metadata.yaml and a TensorRT engine's JSON header give the names; junk gives None."""
    folder = tmp_path / "best_openvino_model"
    folder.mkdir()
    (folder / "metadata.yaml").write_text("names:\n  0: cat\n  1: dog\n")
    assert model_names(str(folder)) == {0: "cat", 1: "dog"}
    meta = json.dumps({"names": {"0": "bird"}}).encode()
    (tmp_path / "best.engine").write_bytes(len(meta).to_bytes(4, "little") + meta + b"\0engine")
    assert model_names(str(tmp_path / "best.engine")) == {0: "bird"}
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    assert checkpoint_names(tmp_path / "junk.pt") is None
    assert model_names("http://triton:8000/yolo") is None and model_names("model.onnx") is None


def test_zones_for_cameras_not_declared_are_warned_about(tmp_path):
    """With cameras.ids set, a zone of another camera is named; without cameras.ids, no camera is unknown."""
    zone = '[[events.zones]]\ncamera = "yard"\nname = "lawn"\npoints = [[0, 0], [1, 0], [1, 1]]\n'
    path = tmp_path / "c.toml"
    path.write_text(f'[storage]\ndir = "{tmp_path}"\n[detect]\nmodel = "none"\n[cameras]\nids = ["door"]\n' + zone)
    assert preflight(load(path))[1] == [
        "events.zones[0].camera = 'yard' is not in cameras.ids (door): the zone applies only if that camera connects"]
    path.write_text(f'[storage]\ndir = "{tmp_path}"\n[detect]\nmodel = "none"\n' + zone)
    assert preflight(load(path)) == ([], [])
