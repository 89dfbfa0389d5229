"""``SquareLossTrainingArguments``: ``TrainingArguments`` plus the choice of loss, its fields built from the registry.

Every parameter of every registered loss is a field named ``<loss_type>_<param>`` (``square_k``, ``square_m``,
``square_preset``, ``tce_alpha``, ``gce_q``, ``sce_alpha``, ``sce_beta``, ``sce_a``, ``nce_rce_alpha``,
``focal_gamma``...), ``None`` by default (the registry's default then applies, and the loss record says so), with the
registry's help text. ``label_smoothing_factor`` (a ``TrainingArguments`` field) is ``ce``'s label smoothing.

The dataclass is built when this module is first imported. A loss registered with
:func:`hf_squareloss.registry.register_loss` before that import (e.g. at the top of a training script, before
``import hf_squareloss.training_args`` or the Trainer) gets its fields; :func:`training_arguments_class` builds a class
from the registry as it is now, for a loss registered later.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field, fields
from typing import Any

from transformers import TrainingArguments

from .registry import LOSSES, LossConfig, get_loss_spec, loss_fields, loss_types

__all__ = [
    "LOSS_ARGUMENT_NAMES",
    "LossArgumentsMixin",
    "SquareLossTrainingArguments",
    "loss_argument_names",
    "training_arguments_class",
]


def _base_fields() -> set[str]:
    return {f.name for f in fields(TrainingArguments)}


def _loss_type_field() -> tuple[str, type, Any]:
    return (
        "loss_type",
        str,
        field(
            default="square",
            metadata={
                "help": "Training loss: "
                + "; ".join(f"'{name}': {spec.title}" for name, spec in LOSSES.items())
                + ".",
                "choices": loss_types(),
            },
        ),
    )


def _other_fields() -> list[tuple[str, type, Any]]:
    """Fields that are not loss parameters."""
    return [
        (
            "loss_from_hidden_states",
            bool,
            field(
                default=False,
                metadata={
                    "help": "Compute the training loss from the model's last hidden states and the weight of its "
                    "output layer (get_output_embeddings(), an nn.Linear), so that the logits are never made: the "
                    "square loss through the layer's d x d Gram matrix, ce and tce in blocks of rows "
                    "(hf_squareloss.linear). Same values and gradients; for language-model heads with large "
                    "vocabularies. Evaluation and predict still return logits."
                },
            ),
        )
    ]


def _parameter_fields() -> list[tuple[str, type, Any]]:
    """One dataclass field per registered loss parameter (those ``TrainingArguments`` already has excepted)."""
    out = []
    base = _base_fields()
    for name, (loss_type, param) in loss_fields().items():
        if name in base:
            continue
        default = "" if param.default is None else f" When not set: {param.default:.4g}."
        metadata: dict[str, Any] = {"help": f"[{loss_type}] {param.help}.{default}"}
        if param.choices:
            metadata["choices"] = list(param.choices)
        out.append((name, param.type | None, field(default=None, metadata=metadata)))
    return out


class LossArgumentsMixin:
    """The methods of :class:`SquareLossTrainingArguments` (its fields come from the registry)."""

    loss_type: str
    label_smoothing_factor: float

    def __post_init__(self) -> None:
        self.check_loss_fields()
        self.loss_config()  # fail early, before TrainingArguments does its (slower) set-up
        super().__post_init__()  # type: ignore[misc]

    def check_loss_fields(self) -> None:
        """Validate every loss field that is set, also those of losses not chosen (a typo is never silent)."""
        get_loss_spec(self.loss_type)
        for name, (_, param) in loss_fields().items():
            value = getattr(self, name, None)
            if value is not None:
                try:
                    param.check(param.name, value)
                except ValueError as err:
                    raise ValueError(f"--{name}: {err}") from None

    def loss_settings(self) -> dict[str, Any]:
        """The chosen loss's parameters by their keyword (``{"k": ..., "M": ..., "preset": ...}``), ``None`` for
        those not set, plus ``label_smoothing`` (refused by the losses that cannot honour it)."""
        spec = get_loss_spec(self.loss_type)
        settings = {p.name: getattr(self, name, None) for name, p in spec.fields().items()}
        settings.setdefault("label_smoothing", self.label_smoothing_factor)
        return settings

    def loss_config(self, num_classes: int | None = None) -> LossConfig:
        """The resolved loss for a classifier with ``num_classes`` outputs (``ValueError`` on bad settings)."""
        return LossConfig.resolve(self.loss_type, num_classes=num_classes, **self.loss_settings())

    @classmethod
    def from_training_arguments(cls, args: TrainingArguments, **loss_settings: Any) -> Any:
        """Copy a plain ``TrainingArguments`` (or subclass) into this class, with the given loss settings."""
        values = {
            f.name: getattr(args, f.name)
            for f in fields(TrainingArguments)
            if f.init and hasattr(args, f.name)
        }
        for name in loss_argument_names(cls):
            if hasattr(args, name):
                values[name] = getattr(args, name)
        values.update({k: v for k, v in loss_settings.items() if v is not None})
        return cls(**values)


def training_arguments_class(name: str = "SquareLossTrainingArguments") -> type:
    """A ``TrainingArguments`` dataclass with ``loss_type`` and one field per parameter of every loss registered now.

    :class:`SquareLossTrainingArguments` is this, built at import; call it again after registering a loss later.
    """
    cls = dataclasses.make_dataclass(
        name,
        [_loss_type_field(), *_other_fields(), *_parameter_fields()],
        bases=(LossArgumentsMixin, TrainingArguments),
        namespace={
            "__doc__": ":class:`~transformers.TrainingArguments` with the loss to train with.\n\n"
            "``HfArgumentParser((SquareLossTrainingArguments,))`` gives ``--loss_type`` and "
            "``--<loss_type>_<param>`` for every registered loss parameter (with the registry's help) beside every "
            "``TrainingArguments`` flag. Invalid values fail here, before any model is loaded. "
            "``label_smoothing_factor`` is honoured by ``ce`` and refused by the other losses.",
        },
    )
    cls.__module__ = __name__
    if name in globals():  # built again after import: give it its own reachable name, so that it pickles
        _rebuilt.append(cls)
        cls.__qualname__ = f"{name}_rebuilt_{len(_rebuilt)}"
        globals()[cls.__qualname__] = cls
    return cls


_rebuilt: list[type] = []


def loss_argument_names(cls: type | None = None) -> list[str]:
    """The loss fields of ``cls`` (default :class:`SquareLossTrainingArguments`): ``loss_type`` and the parameters."""
    cls = SquareLossTrainingArguments if cls is None else cls
    names = {"loss_type", *loss_fields()} - _base_fields()
    return [f.name for f in fields(cls) if f.name in names]


SquareLossTrainingArguments = training_arguments_class()

LOSS_ARGUMENT_NAMES: dict[str, str] = {
    "loss_type": "loss_type",
    **{name: param.name for name, (_, param) in loss_fields().items() if name in loss_argument_names()},
}
"""``TrainingArguments`` field -> keyword of the loss's parameter (``tce_alpha`` -> ``alpha``)."""
