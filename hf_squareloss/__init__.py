"""hf-squareloss: train Hugging Face classifiers with the rescaled square loss, the Tamed Cross Entropy, and the
losses people compare them with (squentropy, GCE, SCE, NCE+RCE, focal)."""

from __future__ import annotations

__version__ = "0.1.0"

from .calibration import calibration_metrics, fit_temperature
from .citations import BIBTEX, bibtex
from .functional import cross_entropy, softmax_mae, softmax_mse, square_loss, tame, tamed_cross_entropy
from .linear import linear_cross_entropy, linear_square_loss, linear_tamed_cross_entropy
from .losses import focal_loss, generalized_cross_entropy, nce_rce, squentropy, symmetric_cross_entropy
from .modules import (
    CrossEntropyLoss,
    FocalLoss,
    GeneralizedCrossEntropyLoss,
    NCERCELoss,
    SoftmaxMAELoss,
    SoftmaxMSELoss,
    SquareLoss,
    SquentropyLoss,
    SymmetricCrossEntropyLoss,
    TamedCrossEntropyLoss,
)
from .presets import SQUARE_LOSS_PRESETS, SquareLossParams, square_loss_preset
from .registry import LOSSES, LossConfig, LossParam, LossSpec, get_loss_spec, loss_types, register_loss
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
    "LossFunction": "loss_function",
    "SquareLossTrainer": "trainer",
    "make_compute_loss_func": "loss_function",
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
    "FocalLoss",
    "GeneralizedCrossEntropyLoss",
    "LossConfig",
    "LossFunction",
    "LossParam",
    "LossSpec",
    "NCERCELoss",
    "SoftmaxMAELoss",
    "SoftmaxMSELoss",
    "SquareLoss",
    "SquareLossParams",
    "SquareLossTrainer",
    "SquareLossTrainingArguments",
    "SquentropyLoss",
    "SymmetricCrossEntropyLoss",
    "TamedCrossEntropyLoss",
    "__version__",
    "attach_model_card",
    "bibtex",
    "calibration_metrics",
    "cross_entropy",
    "fit_temperature",
    "focal_loss",
    "generalized_cross_entropy",
    "get_loss_spec",
    "linear_cross_entropy",
    "linear_square_loss",
    "linear_tamed_cross_entropy",
    "logits_to_scores",
    "loss_config_of",
    "loss_types",
    "make_compute_loss_func",
    "nce_rce",
    "pipeline_kwargs",
    "pipeline_scores",
    "register_loss",
    "served_log_probs",
    "set_temperature",
    "softmax_mae",
    "softmax_mse",
    "square_loss",
    "square_loss_preset",
    "squentropy",
    "symmetric_cross_entropy",
    "tame",
    "tamed_cross_entropy",
    "temperature_of",
]
