import msgspec
import pytest

from veena.platform.config import load_config, parse_config, plugin_settings
from veena.platform.errors import ConfigError
from veena.platform.plugins import build_runtime


def test_defaults_with_no_file(monkeypatch):
    monkeypatch.delenv("VEENA_CONFIG", raising=False)
    cfg = load_config()
    assert cfg.stages.synthesizer == "espeak" and cfg.server.host == "127.0.0.1"


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="bogus"):
        parse_config({"server": {"bogus": 1}})
    with pytest.raises(ConfigError, match="nope"):
        parse_config({"nope": 1})


def test_bad_value_names_the_key():
    with pytest.raises(ConfigError, match="server.port"):
        parse_config({"server": {"port": "eighty"}})


def test_file_from_env(tmp_path, monkeypatch):
    p = tmp_path / "v.toml"
    p.write_text('[defaults]\nformat = "mp3"\n')
    monkeypatch.setenv("VEENA_CONFIG", str(p))
    assert load_config().defaults.format == "mp3"


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError):
        load_config(bad)


class Knobs(msgspec.Struct, forbid_unknown_fields=True):
    level: int = 1


def test_plugin_settings_decode_and_name_bad_keys():
    assert plugin_settings("x", Knobs, {"level": 3}).level == 3
    with pytest.raises(ConfigError, match="plugins.x"):
        plugin_settings("x", Knobs, {"lvl": 3})
    with pytest.raises(ConfigError, match="takes no settings"):
        plugin_settings("x", None, {"a": 1})


def test_runtime_rejects_bad_choices():
    with pytest.raises(ConfigError, match="stages.synthesizer"):
        build_runtime(parse_config({"stages": {"synthesizer": "nonesuch"}}))
    with pytest.raises(ConfigError, match="defaults.format"):
        build_runtime(parse_config({"defaults": {"format": "wma"}}))
    with pytest.raises(ConfigError, match="defaults.speaker"):
        build_runtime(parse_config({"defaults": {"speaker": "nobody"}}))
    with pytest.raises(ConfigError, match="unknown plugin"):
        build_runtime(parse_config({"disable": ["nonesuch"]}))
    with pytest.raises(ConfigError, match="plugins.nonesuch"):
        build_runtime(parse_config({"plugins": {"nonesuch": {}}}))


def test_disabling_core_is_reported():
    with pytest.raises(ConfigError, match="core"):
        build_runtime(parse_config({"disable": ["core"]}))
