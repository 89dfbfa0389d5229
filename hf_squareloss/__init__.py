"""hf-squareloss: train Hugging Face classifiers with the rescaled square loss or the Tamed Cross Entropy."""

from __future__ import annotations

__version__ = "0.1.0"

from .calibration import calibration_metrics, fit_temperature
from .citations import BIBTEX, bibtex
from .functional import cross_entropy, softmax_mae, softmax_mse, square_loss, tame, tamed_cross_entropy
from .linear import linear_cross_entropy, linear_square_loss, linear_tamed_cross_entropy
from .modules import CrossEntropyLoss, SoftmaxMAELoss, SoftmaxMSELoss, SquareLoss, TamedCrossEntropyLoss
from .presets import SQUARE_LOSS_PRESETS, SquareLossParams, square_loss_preset
from .registry import LOSSES, LossConfig, LossSpec, get_loss_spec, loss_types
from .scores import (
    logits_to_scores,
    loss_config_of,
    pipeline_kwargs,
    pipeline_scores,
    served_log_probs,
    set_temperature,
    temperature_of,
)

# The Trainer side imports transformers.Trainer (seconds); load it on first use so that the losses alone stay light.
_LAZY = {
    "LossFunction": "trainer",
    "SquareLossTrainer": "trainer",
    "make_compute_loss_func": "trainer",
    "SquareLossTrainingArguments": "training_args",
    "attach_model_card": "trainer_card",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        from .environment import torchaudio_guard

        with (
            torchaudio_guard()
        ):  # transformers imports torchaudio: a broken pair gets a message that names it
            module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BIBTEX",
    "LOSSES",
    "SQUARE_LOSS_PRESETS",
    "CrossEntropyLoss",
    "LossConfig",
    "LossFunction",
    "LossSpec",
    "SoftmaxMAELoss",
    "SoftmaxMSELoss",
    "SquareLoss",
    "SquareLossParams",
    "SquareLossTrainer",
    "SquareLossTrainingArguments",
    "TamedCrossEntropyLoss",
    "__version__",
    "attach_model_card",
    "bibtex",
    "calibration_metrics",
    "cross_entropy",
    "fit_temperature",
    "get_loss_spec",
    "linear_cross_entropy",
    "linear_square_loss",
    "linear_tamed_cross_entropy",
    "logits_to_scores",
    "loss_config_of",
    "loss_types",
    "make_compute_loss_func",
    "pipeline_kwargs",
    "pipeline_scores",
    "served_log_probs",
    "set_temperature",
    "softmax_mae",
    "softmax_mse",
    "square_loss",
    "square_loss_preset",
    "tame",
    "tamed_cross_entropy",
    "temperature_of",
]
