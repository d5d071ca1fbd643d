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


def test_zones_are_parsed_once_into_dataclasses(tmp_path):
    """[[events.zones]] become ZoneConfig objects with float points and a label set ("*" or none: every label)."""
    path = tmp_path / "c.toml"
    path.write_text('[[events.zones]]\ncamera = "door"\nname = "porch"\npoints = [[0, 0.5], [1, 0.5], [1, 1]]\n'
                    '[[events.zones]]\ncamera = "door"\nname = "path"\npoints = [[0, 0], [1, 0], [1, 1]]\n'
                    'labels = ["person"]\n')
    porch, path_zone = load(path).events.zones
    assert (porch.camera, porch.name, porch.points, porch.labels) == ("door", "porch", ((0.0, 0.5), (1.0, 0.5), (1.0, 1.0)), frozenset())
    assert path_zone.labels == frozenset({"person"})


@pytest.mark.parametrize(
    "zone, key, words",
    [
        ('camera = "door"\nname = "porch"\npoints = [[0, 0], [1, 0]]\n', "events.zones[0].points", "3 or more"),
        ('camera = "door"\nname = "porch"\npoints = [[0, 0], [1, 0], [1, 2]]\n', "events.zones[0].points", "from 0 to 1"),
        ('camera = "door"\nname = "porch"\npoints = [[0, 0], [1, 0], [1, 1]]\ncolour = "red"\n', "events.zones[0].colour", "unknown key"),
        ('camera = "door"\npoints = [[0, 0], [1, 0], [1, 1]]\n', "events.zones[0].name", "is required"),
        ('camera = "a door"\nname = "porch"\npoints = [[0, 0], [1, 0], [1, 1]]\n', "events.zones[0].camera", "letters"),
        ('camera = "door"\nname = "porch"\npoints = [[0, 0], [1, 0], [1, 1]]\nlabels = []\n', "events.zones[0].labels", "non-empty"),
    ],
)
def test_a_bad_zone_names_the_key_inside_its_table(tmp_path, zone, key, words):
    """A bad zone entry is one ConfigError naming the key inside the zone table, e.g. events.zones[0].points."""
    path = tmp_path / "c.toml"
    path.write_text("[[events.zones]]\n" + zone)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == key and words in str(info.value)


def test_a_misspelt_table_shows_its_name_not_its_content(tmp_path):
    """An unknown table is reported by name; its keys (maybe secrets) are not printed."""
    path = tmp_path / "c.toml"
    path.write_text('[mqtt_broker]\npassword = "hunter2-secret"\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == "mqtt_broker" and "hunter2" not in str(info.value)


def test_per_camera_motion_and_board_settings_tables(tmp_path):
    """[cameras.<id>.motion] keys go over [motion] for that camera only; [cameras.<id>.settings] is checked against
    the board's ranges; a bad key names the camera and the key."""
    from camserver.cli import build_parser, config_from_args

    path = tmp_path / "c.toml"
    path.write_text('[motion]\nthreshold = 25\n[cameras]\nids = ["door"]\n[cameras.door.motion]\nrecheck_s = 2\n'
                    '[cameras.door.settings]\nbrightness = 1\nvflip = true\n')
    config = config_from_args(build_parser().parse_args(["--config", str(path)]))
    door, yard = config.motion_for("door"), config.motion_for("yard")
    assert (door.threshold, door.recheck_s) == (25, 2.0) and (yard.threshold, yard.recheck_s) == (25, 5.0)
    assert dict(config.cameras.of("door").settings) == {"brightness": 1, "vflip": True}
    for toml, key in (('[cameras.door.motion]\nthresold = 3\n', "cameras.door.motion.thresold"),
                      ('[cameras.door.settings]\nbrightness = 7\n', "cameras.door.settings.brightness"),
                      ('[cameras.door.lights]\non = true\n', "cameras.door.lights")):
        path.write_text(toml)
        with pytest.raises(ConfigError) as info:
            config_from_args(build_parser().parse_args(["--config", str(path)]))
        assert info.value.key == key


def _table_lines(lines: list[str], header: str) -> list[str]:
    """The lines under `header` ("[record]" or a commented "# [[webhooks]]") up to the next table or blank gap."""
    start = next((i for i, ln in enumerate(lines) if ln.strip() == header), None)
    if start is None:
        return []
    if header.startswith("#"):  # a commented example ends at its comment block's end
        end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("#")), len(lines))
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    return lines[start + 1 : end]


def test_config_toml_lists_every_key_of_every_table():
    """Every field of every table's model is in config.toml under its table, set (`key =`) or commented
    (`# key =`); a list-of-tables field (zones, masks, filters) may be its commented [[...]] example."""
    import re

    from camserver.config import tables as t

    lines = (ROOT / "config.toml").read_text().splitlines()
    documented = {
        "[ingest]": t.IngestConfig, "[http]": t.HttpConfig, "[detect]": t.DetectConfig,
        "[events]": t.EventsConfig, "[motion]": t.MotionConfig, "[storage]": t.StorageConfig,
        "[record]": t.RecordConfig, "[mqtt]": t.MqttConfig, "[log]": t.LogConfig,
        "# [[webhooks]]": t.WebhookConfig, "# [[notify]]": t.NotifyConfig,
    }
    missing = []
    for header, table in documented.items():
        body = _table_lines(lines, header)
        name = header.strip("#[] ")
        for field in table.model_fields:
            key = re.compile(rf"^(# ?)?{field} *=")
            example = (f"[[{name}.{field}]]", f"[{name}.{field}.")
            if not any(key.match(ln.strip()) or any(e in ln for e in example) for ln in body):
                missing.append(f"{name}.{field}")
    if not any(re.match(r"^ids *=", ln) for ln in _table_lines(lines, "[cameras]")):
        missing.append("cameras.ids")
    assert not missing, f"config.toml does not document: {', '.join(missing)}"
