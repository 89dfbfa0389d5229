"""``SquareLossTrainingArguments``: ``TrainingArguments`` plus the choice of loss."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from transformers import TrainingArguments

from .presets import SQUARE_LOSS_PRESETS
from .registry import DEFAULT_TCE_ALPHA, LOSSES, LossConfig, loss_types

__all__ = ["LOSS_ARGUMENT_NAMES", "SquareLossTrainingArguments"]

# TrainingArguments field -> keyword of LossConfig.resolve
LOSS_ARGUMENT_NAMES: dict[str, str] = {
    "loss_type": "loss_type",
    "square_k": "k",
    "square_m": "M",
    "square_preset": "preset",
    "tce_alpha": "alpha",
}


@dataclass
class SquareLossTrainingArguments(TrainingArguments):
    """:class:`~transformers.TrainingArguments` with the loss to train with.

    ``HfArgumentParser((SquareLossTrainingArguments,))`` gives ``--loss_type``, ``--square_k``, ``--square_m``,
    ``--square_preset`` and ``--tce_alpha`` beside every ``TrainingArguments`` flag. Invalid values fail here,
    before any model is loaded. ``label_smoothing_factor`` is honoured by ``ce`` and refused by the other losses.
    """

    loss_type: str = field(
        default="square",
        metadata={
            "help": "Training loss: "
            + "; ".join(f"'{name}': {spec.title}" for name, spec in LOSSES.items())
            + ".",
            "choices": loss_types(),
        },
    )
    square_k: float | None = field(
        default=None,
        metadata={
            "help": "Square loss: weight k > 0 of the true-class term. Default: from --square_preset, else from "
            "the number of classes (1 below 40 classes, 1 below 500, 15 from 500)."
        },
    )
    square_m: float | None = field(
        default=None,
        metadata={
            "help": "Square loss: target M > 0 of the true-class logit. Default: from --square_preset, else "
            "from the number of classes (1 below 40 classes, 15 below 500, 30 from 500)."
        },
    )
    square_preset: str | None = field(
        default=None,
        metadata={
            "help": "Square loss: take (k, M) from Hui & Belkin's setting for a data set: small (1, 1), "
            "timit / wsj (1, 15), librispeech / imagenet (15, 30). --square_k / --square_m override it.",
            "choices": list(SQUARE_LOSS_PRESETS),
        },
    )
    tce_alpha: float = field(
        default=DEFAULT_TCE_ALPHA,
        metadata={
            "help": "Tamed Cross Entropy: alpha >= 0 (0 is cross-entropy, 1 is log(1 - log q)); 1.5 is the "
            "TCE paper's best trade-off."
        },
    )

    loss_from_hidden_states: bool = field(
        default=False,
        metadata={
            "help": "Compute the training loss from the model's last hidden states and the weight of its output "
            "layer (get_output_embeddings(), an nn.Linear), so that the logits are never made: the square loss "
            "through the layer's d x d Gram matrix, ce and tce in blocks of rows (hf_squareloss.linear). Same "
            "values and gradients; for language-model heads with large vocabularies. Evaluation and predict "
            "still return logits."
        },
    )

    def __post_init__(self) -> None:
        self.loss_config()  # fail early, before TrainingArguments does its (slower) set-up
        super().__post_init__()

    def loss_config(self, num_classes: int | None = None) -> LossConfig:
        """The resolved loss for a classifier with ``num_classes`` outputs (``ValueError`` on bad settings)."""
        return LossConfig.resolve(
            self.loss_type,
            num_classes=num_classes,
            k=self.square_k,
            M=self.square_m,
            preset=self.square_preset,
            alpha=self.tce_alpha,
            label_smoothing=self.label_smoothing_factor,
        )

    @classmethod
    def from_training_arguments(cls, args: TrainingArguments, **loss_settings) -> SquareLossTrainingArguments:
        """Copy a plain ``TrainingArguments`` (or subclass) into this class, with the given loss settings."""
        values = {
            f.name: getattr(args, f.name)
            for f in fields(TrainingArguments)
            if f.init and hasattr(args, f.name)
        }
        for name in LOSS_ARGUMENT_NAMES:
            if hasattr(args, name):
                values[name] = getattr(args, name)
        values.update({k: v for k, v in loss_settings.items() if v is not None})
        return cls(**values)
