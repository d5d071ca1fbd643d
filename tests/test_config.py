"""Configuration: defaults, validation messages that name the dotted key, CLI overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from camserver.cli import build_parser, config_from_args
from camserver.config import ConfigError, load

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_config_toml_is_valid_and_equals_the_defaults():
    """config.toml at the root loads and documents exactly the built-in defaults."""
    assert load(ROOT / "config.toml") == load(None)


def test_every_key_in_config_toml_has_a_comment():
    """Each key line in config.toml has a comment line above it (or above its group)."""
    lines = (ROOT / "config.toml").read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            above = [ln for ln in lines[max(0, i - 3) : i] if ln.strip()]
            assert any(ln.lstrip().startswith("#") for ln in above), f"undocumented key: {line}"


@pytest.mark.parametrize(
    "toml, key, words",
    [
        ("[ingest]\nport = 70000\n", "ingest.port", "from 0 to 65535"),
        ("[ingest]\nprot = 3001\n", "ingest.prot", "unknown key"),
        ("[detect]\nconf = 1.5\n", "detect.conf", "from 0.0 to 1.0"),
        ("[detect]\nimgsz = \"big\"\n", "detect.imgsz", "must be an integer"),
        ("[http]\nviewer_write_timeout_s = 0\n", "http.viewer_write_timeout_s", "from 0.1"),
        ("[log]\nlevel = \"loud\"\n", "log.level", "debug, info"),
        ("[cameras]\nids = [\"ok\", \"no spaces\"]\n", "cameras.ids", "camera ids"),
        ("[camera]\nids = []\n", "camera", "unknown table"),
        ("[ingest]\ndefault_camera_id = \"a/b\"\n", "ingest.default_camera_id", "letters, digits"),
    ],
)
def test_bad_values_name_the_key_value_and_what_is_allowed(tmp_path, toml, key, words):
    """Every invalid value is one ConfigError naming the dotted key and what is allowed."""
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == key
    assert key in str(info.value) and words in str(info.value)


def test_flags_override_the_file(tmp_path):
    """Command-line flags win over config.toml; unspecified keys keep the file's values."""
    path = tmp_path / "c.toml"
    path.write_text("[ingest]\nport = 4000\n[detect]\nconf = 0.5\nimgsz = 320\n")
    args = build_parser().parse_args(["--config", str(path), "--ws-port", "4001", "--conf", "0.3", "--model", "none"])
    config = config_from_args(args)
    assert config.ingest.port == 4001
    assert config.detect.conf == 0.3
    assert config.detect.imgsz == 320
    assert config.passthrough


def test_token_flags_set_both_tokens():
    """--camera-token and --viewer-token set ingest.token and http.token; short tokens are refused."""
    args = build_parser().parse_args(["--camera-token", "cam-secret-1", "--viewer-token", "view-secret-1"])
    config = config_from_args(args)
    assert (config.ingest.token, config.http.token) == ("cam-secret-1", "view-secret-1")
    with pytest.raises(ConfigError, match="ingest.token"):
        config_from_args(build_parser().parse_args(["--camera-token", "short"]))


def test_flag_values_are_validated_too():
    """An out-of-range flag is reported with the key it sets."""
    args = build_parser().parse_args(["--http-port", "99999"])
    with pytest.raises(ConfigError, match="http.port"):
        config_from_args(args)
