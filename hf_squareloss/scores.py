"""Reading a trained model's outputs: what each loss's logits mean.

A model trained with the square loss outputs **scores**: the training target of the true class is ``M`` and of
every other class 0. A softmax of those scores is not a probability of anything, so pipelines must be told not to
apply one: ``pipeline("text-classification", model=..., function_to_apply="none")``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .registry import LossConfig, get_loss_spec

__all__ = ["logits_to_scores", "loss_config_of", "pipeline_kwargs"]

CONFIG_KEY = "hf_squareloss"


def loss_config_of(source: Any) -> LossConfig:
    """A :class:`LossConfig` from a loss type name, a ``LossConfig``, a loss record dict, a model config or a model."""
    if isinstance(source, LossConfig):
        return source
    if isinstance(source, str):
        return LossConfig.resolve(source)
    if isinstance(source, Mapping):
        return LossConfig.from_dict(source)
    config = getattr(source, "config", source)
    record = getattr(config, CONFIG_KEY, None)
    if record is None:
        raise ValueError(
            f"{type(source).__name__} carries no `{CONFIG_KEY}` record in its config: it was not trained with "
            "hf-squareloss, or its config was saved without it; pass the loss_type explicitly"
        )
    return LossConfig.from_dict(record)


def logits_to_scores(logits: Tensor, loss: Any) -> Tensor:
    """The numbers a user should read from ``logits`` of a model trained with ``loss``.

    * square loss: ``logits / M``, so that 1 is the training target of the true class and 0 that of the others.
      These are scores, not probabilities: they need not sum to 1 and may leave ``[0, 1]``.
    * every other registered loss: ``softmax(logits)``, class probabilities.

    The predicted class is ``argmax`` of either. ``loss`` is anything :func:`loss_config_of` accepts.
    """
    config = loss_config_of(loss)
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    if config.spec.outputs == "scores":
        return logits / config.params.get("M", 1.0)
    return torch.softmax(logits, dim=-1)


def pipeline_kwargs(loss: Any) -> dict[str, str]:
    """Keyword arguments for a ``transformers`` classification pipeline call on a model trained with ``loss``.

    ``{"function_to_apply": "none"}`` for the square loss (raw scores), ``{}`` (softmax) otherwise.
    """
    spec = get_loss_spec(loss) if isinstance(loss, str) else loss_config_of(loss).spec
    return {"function_to_apply": "none"} if spec.outputs == "scores" else {}
