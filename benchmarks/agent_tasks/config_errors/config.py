"""Load the app's settings.json on top of the defaults."""

import json
from pathlib import Path

DEFAULTS = {"theme": "light", "autosave": True, "font_size": 12}


class ConfigError(Exception):
    """The settings file exists but cannot be used."""


def load_config(path: str | Path) -> dict:
    path = Path(path)
    with path.open() as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    unknown = set(data) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"{path}: unknown settings {sorted(unknown)}")
    return {**DEFAULTS, **data}
