"""Shared helpers for the deploy/ tests: the scripts there are files, not a package, so they load by path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "qcoder"


def load_script(name: str):
    """Import deploy/<name>.py as a module (cached in sys.modules under deploy_<name>)."""
    key = f"deploy_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, DEPLOY / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


@pytest.fixture(scope="session")
def helm():
    return load_script("helm_render")


@pytest.fixture(scope="session")
def sizing():
    return load_script("sizing")
