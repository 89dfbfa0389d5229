"""The SpeechBrain recipes' YAML files offer every registered loss's parameters, under the names the registry gives.

Read as text (no SpeechBrain needed): each parameter is a top-level key, passed on to ``LogitsLoss``, and where
its comment names the losses that own it, those are the registry's owners.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hf_squareloss.registry import get_loss_spec, loss_types

ROOT = Path(__file__).resolve().parents[1]
YAMLS = [*sorted(ROOT.glob("recipes/asr/*/hparams/*.yaml")), ROOT / "recipes/fsdd/hparams/train.yaml"]


def _hyperparameters() -> dict[str, list[str]]:
    """parameter name -> the loss types that take it (label smoothing, with its neutral value, aside)."""
    owners: dict[str, list[str]] = {}
    for loss_type in loss_types():
        for param in get_loss_spec(loss_type).params:
            if not param.setting and param.neutral is None:
                owners.setdefault(param.name, []).append(loss_type)
    return owners


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.parent.parent.name)
def test_every_loss_parameter_is_a_key_passed_to_logits_loss(path: Path) -> None:
    text = path.read_text()
    block = re.search(r"!new:hf_squareloss\.speechbrain\.LogitsLoss\n((?:[ ]{4}.*\n)+)", text)
    assert block, f"{path}: no LogitsLoss block"
    for name, owners in _hyperparameters().items():
        top = re.search(rf"^{re.escape(name)}: null\b(.*)$", text, flags=re.M)
        assert top, f"{path}: no top-level `{name}: null`"
        assert f"    {name}: !ref <{name}>\n" in block.group(1), f"{path}: {name} not passed to LogitsLoss"
        listed = re.match(r"\s*#\s*([a-z_]+(?:, [a-z_]+)*)(?:[;:]|\s*$)", top.group(1))
        if listed and all(word in loss_types() for word in listed.group(1).split(", ")):
            assert listed.group(1).split(", ") == owners, f"{path}: the comment of {name} names other losses"
    assert "softmax_mse | softmax_mae" not in text  # no hand-written list of the loss types
