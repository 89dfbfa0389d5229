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


def pytest_ignore_collect(collection_path, config):
    """Without SpeechBrain (the core installed without the asr extra), ``-m "not asr"`` also skips importing the
    asr test modules, which import SpeechBrain at the top; without that marker expression they fail loudly."""
    if collection_path.suffix != ".py" or "not asr" not in (config.option.markexpr or ""):
        return None
    import importlib.util

    if importlib.util.find_spec("speechbrain") is not None:
        return None
    return "pytestmark = pytest.mark.asr" in collection_path.read_text(encoding="utf-8") or None


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


def _shield_speechbrain_lazy_modules() -> None:
    """SpeechBrain puts lazy modules for optional integrations (k2, spaCy, ...) in ``sys.modules``; reading their
    ``__file__`` imports them and raises ImportError when the integration is not installed. Hypothesis reads
    ``__file__`` of every module in ``sys.modules`` before and during property tests, so give the unloaded lazy
    modules a ``__file__`` of None (nothing is imported, their behaviour is otherwise unchanged)."""
    import sys

    if "speechbrain" not in sys.modules:
        return
    from speechbrain.utils.importutils import LazyModule

    for module in list(sys.modules.values()):
        if isinstance(module, LazyModule) and module.lazy_module is None and "__file__" not in vars(module):
            module.__file__ = None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    _shield_speechbrain_lazy_modules()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    _shield_speechbrain_lazy_modules()


@pytest.fixture()
def interrupt_after_first_checkpoint(monkeypatch):
    """Within ``with interrupt_after_first_checkpoint():`` a training run raises ``KeyboardInterrupt`` right after it
    saves its first checkpoint, as an interrupted run would; the trainer is restored after the block."""
    import contextlib

    from hf_squareloss import SquareLossTrainer

    original = SquareLossTrainer._save_checkpoint

    def save_then_die(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise KeyboardInterrupt("simulated interruption after the first checkpoint")

    @contextlib.contextmanager
    def interrupting():
        monkeypatch.setattr(SquareLossTrainer, "_save_checkpoint", save_then_die)
        try:
            yield
        finally:
            monkeypatch.setattr(SquareLossTrainer, "_save_checkpoint", original)

    return interrupting
