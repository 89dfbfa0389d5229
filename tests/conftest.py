"""Shared fixtures: real data from ../shared (or $HF_SQUARELOSS_DATA / $HF_SQUARELOSS_MODELS).

Outside CI a missing data folder skips the test that needs it; with CI=true it fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hf_squareloss.shared_data import ENV_VARS, shared_dir

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _require(kind: str, name: str) -> Path:
    path = shared_dir(kind) / name
    if not path.exists():
        message = f"{path} not found: set {ENV_VARS[kind]} to the folder holding {name!r}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_data():
    """``shared_data("glue/MRPC")`` -> Path of that item under the shared data folder."""
    return lambda name: _require("data", name)


@pytest.fixture(scope="session")
def shared_model():
    """``shared_model("paraphrase-MiniLM-L3-v2")`` -> Path of that model folder."""
    return lambda name: _require("models", name)


@pytest.fixture(autouse=True, scope="session")
def _offline_hub():
    """Tests never touch the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    yield
