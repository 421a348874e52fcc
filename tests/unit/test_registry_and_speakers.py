import pytest

from veena.platform.errors import ConfigError, VeenaError
from veena.platform.registry import DuplicateNameError, Registry
from veena.speakers import Speaker, SpeakerCatalog, load_catalog


class Item:
    def __init__(self, name):
        self.name = name


def test_registry_rejects_duplicates_case_insensitively():
    reg = Registry("thing")
    reg.add(Item("Alpha"), owner="a")
    with pytest.raises(DuplicateNameError, match="already registered by 'a'"):
        reg.add(Item("alpha"), owner="b")
    assert reg.names() == ["alpha"] and "ALPHA" in reg and reg.owner("alpha") == "a"


def test_shipped_catalog_has_the_four_veena3_voices():
    names = {s.name for s in load_catalog()}
    assert names == {"kavya", "agastya", "maitri", "vinaya"}
    for s in load_catalog():
        assert s.settings("espeak")["voice"]


def test_resolution_is_case_insensitive_with_aliases():
    cat = SpeakerCatalog(load_catalog())
    assert cat.resolve(" KAVYA ").name == "kavya"
    assert cat.resolve("veena3_agastya").name == "agastya"


def test_unknown_speaker_lists_valid_names():
    cat = SpeakerCatalog(load_catalog())
    with pytest.raises(VeenaError) as info:
        cat.resolve("nobody")
    assert info.value.code == "unknown_speaker" and info.value.status == 400
    assert info.value.details["valid"] == ["agastya", "kavya", "maitri", "vinaya"]


def test_clashing_alias_is_rejected():
    cat = SpeakerCatalog([Speaker(name="a", aliases=("x",))])
    with pytest.raises(ConfigError, match="already used"):
        cat.add(Speaker(name="b", aliases=("X",)))


def test_operators_add_voice_folders_and_clashes_stop_start_up(tmp_path):
    from veena.platform.config import parse_config
    from veena.platform.plugins import build_runtime

    (tmp_path / "studio.toml").write_text(
        'name = "studio"\naliases = ["house"]\nlanguages = ["en"]\ngender = "male"\n'
        'description = "An operator voice"\n[synthesizers.espeak]\nvoice = "en-us"\n')
    runtime = build_runtime(parse_config({"plugins": {"catalog": {"folders": [str(tmp_path)]}}}))
    assert runtime.speakers.resolve("HOUSE").name == "studio"
    assert runtime.speakers.resolve("kavya").name == "kavya"

    (tmp_path / "clash.toml").write_text(
        'name = "clash"\naliases = ["Kavya"]\nlanguages = ["en"]\ngender = "female"\n'
        'description = "Clashes"\n[synthesizers.espeak]\nvoice = "en-us"\n')
    with pytest.raises(ConfigError, match="already used"):
        build_runtime(parse_config({"plugins": {"catalog": {"folders": [str(tmp_path)]}}}))
    with pytest.raises(ConfigError, match="not a folder"):
        build_runtime(parse_config({"plugins": {"catalog": {"folders": [str(tmp_path / "no")]}}}))
