import pytest

from config import DEFAULTS, ConfigError, load_config


def test_missing_file_gives_defaults(tmp_path):
    assert load_config(tmp_path / "settings.json") == DEFAULTS


def test_values_override_defaults(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text('{"theme": "dark"}')
    assert load_config(path) == {**DEFAULTS, "theme": "dark"}


def test_invalid_json_is_a_config_error(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text("{theme: dark")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "settings.json" in str(info.value)


def test_unknown_key(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text('{"colour": 1}')
    with pytest.raises(ConfigError):
        load_config(path)
