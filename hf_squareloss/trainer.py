"""``SquareLossTrainer`` and the ``compute_loss_func`` for the stock ``Trainer``.

Normalisation. The loss of a training step is ``sum(per-item loss) / num_items_in_batch``, where
``num_items_in_batch`` is the number of non-ignored labels in the whole accumulated batch, over all processes (the
Trainer counts it). Hence one step with batch 16 equals batch 8 x 2 accumulation steps, and 2 processes x 8 equal
1 x 16, for every loss type, ``ce`` included. Stock transformers 5.x gets this wrong for BERT-family
``*ForSequenceClassification`` models: their ``forward`` accepts ``**kwargs``, so the Trainer believes they
normalise by ``num_items_in_batch``; they return a per-micro-batch mean instead, which the Trainer then neither
divides by the accumulation steps nor by the world size.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from torch import Tensor
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from .registry import LossConfig
from .scores import CONFIG_KEY
from .training_args import LOSS_ARGUMENT_NAMES, SquareLossTrainingArguments

__all__ = ["LossFunction", "SquareLossTrainer", "make_compute_loss_func"]

logger = logging.getLogger(__name__)


def _logits_of(outputs: Any) -> Tensor:
    if isinstance(outputs, Tensor):
        return outputs
    if isinstance(outputs, Mapping):
        if "logits" not in outputs:
            raise ValueError(f"the model output has no `logits` (keys: {list(outputs.keys())})")
        return outputs["logits"]
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], Tensor):
        return outputs[0]
    raise ValueError(f"cannot find logits in a model output of type {type(outputs).__name__}")


class LossFunction:
    """A ``compute_loss_func`` for :class:`transformers.Trainer`: ``sum(per item) / num_items_in_batch``.

    Hyper-parameters left as ``None`` are resolved from the number of classes, read from the logits on the first
    call (so multiple-choice heads, whose ``C`` is the number of choices, get the right preset). ``-100`` labels
    are ignored, as everywhere in ``transformers``.

    >>> from transformers import Trainer
    >>> trainer = Trainer(model=model, args=args, compute_loss_func=make_compute_loss_func("square"))  # doctest: +SKIP
    """

    ignore_index = -100

    def __init__(
        self,
        loss_type: str = "square",
        *,
        k: float | None = None,
        M: float | None = None,
        preset: str | None = None,
        alpha: float | None = None,
        label_smoothing: float = 0.0,
        num_classes: int | None = None,
    ) -> None:
        self._settings = {
            "k": k,
            "M": M,
            "preset": preset,
            "alpha": alpha,
            "label_smoothing": label_smoothing,
        }
        self.loss_type = loss_type
        # validate now: bad settings fail at construction, not at the first step
        self.config: LossConfig = LossConfig.resolve(loss_type, num_classes=num_classes, **self._settings)
        self.num_classes = num_classes

    def resolve(self, num_classes: int) -> LossConfig:
        """The loss for ``num_classes`` outputs (re-resolved when the number of classes changes)."""
        if num_classes != self.num_classes:
            self.config = LossConfig.resolve(self.loss_type, num_classes=num_classes, **self._settings)
            self.num_classes = num_classes
        return self.config

    def __call__(
        self, outputs: Any, labels: Tensor | None, num_items_in_batch: Tensor | int | None = None
    ) -> Tensor:
        if labels is None:
            raise ValueError(
                f"loss_type={self.loss_type!r} needs `labels` in the batch; the model received none (check "
                "the dataset's label column and `label_names`)"
            )
        logits = _logits_of(outputs)
        config = self.resolve(logits.shape[-1])
        if num_items_in_batch is None:
            return config(logits, labels, ignore_index=self.ignore_index, reduction="mean")
        total = config(logits, labels, ignore_index=self.ignore_index, reduction="sum")
        if isinstance(num_items_in_batch, Tensor):
            count = num_items_in_batch.to(device=total.device, dtype=total.dtype).clamp_min(1)
        else:
            count = max(float(num_items_in_batch), 1.0)
        return total / count


def make_compute_loss_func(loss_type: str = "square", **settings: Any) -> LossFunction:
    """The loss of ``loss_type`` for ``Trainer(compute_loss_func=...)``; ``settings`` as in :class:`LossFunction`."""
    return LossFunction(loss_type, **settings)


def _num_classes_of(model: Any) -> int | None:
    """Number of classes from the model config, or None when only the logits can tell (multiple choice)."""
    if model is None or "MultipleChoice" in type(model).__name__:
        return None
    num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    return int(num_labels) if num_labels else None


def read_loss_record(checkpoint_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``hf_squareloss`` record of a saved model or checkpoint folder (``None`` when it has none)."""
    path = os.path.join(checkpoint_dir, "config.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh).get(CONFIG_KEY)


class SquareLossTrainer(Trainer):
    """A :class:`~transformers.Trainer` that trains with the loss chosen by ``loss_type``.

    Works for any model that returns ``logits`` of shape ``(..., C)`` and takes integer ``labels`` (sequence,
    token, multiple-choice, image and audio classification heads); ``-100`` labels are ignored.

    Loss settings come from ``args`` (a :class:`SquareLossTrainingArguments`; a plain ``TrainingArguments`` is
    converted). ``loss_type``, ``square_k``, ``square_m``, ``square_preset`` and ``tce_alpha`` may also be passed
    here: they are written into ``self.args``, which stays the one source of truth.

    The resolved loss is recorded in ``model.config.hf_squareloss`` so that saved models, checkpoints and pushed
    repositories say how they were trained; resuming from a checkpoint recorded with other loss settings is an
    error.
    """

    def __init__(
        self,
        model: Any = None,
        args: TrainingArguments | None = None,
        *,
        loss_type: str | None = None,
        square_k: float | None = None,
        square_m: float | None = None,
        square_preset: str | None = None,
        tce_alpha: float | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("compute_loss_func") is not None:
            raise ValueError(
                "SquareLossTrainer computes the loss from `loss_type`; do not pass `compute_loss_func` (to use "
                "your own loss, use transformers.Trainer)"
            )
        kwargs.pop("compute_loss_func", None)
        overrides = {
            "loss_type": loss_type,
            "square_k": square_k,
            "square_m": square_m,
            "square_preset": square_preset,
            "tce_alpha": tce_alpha,
        }
        if args is None:
            args = SquareLossTrainingArguments(
                output_dir="trainer_output", **{k: v for k, v in overrides.items() if v is not None}
            )
        elif not isinstance(args, SquareLossTrainingArguments):
            args = SquareLossTrainingArguments.from_training_arguments(args, **overrides)
        else:
            for name, value in overrides.items():
                if value is not None:
                    setattr(args, name, value)
        args.loss_config()  # validates the (possibly updated) settings
        settings = {LOSS_ARGUMENT_NAMES[name]: getattr(args, name) for name in LOSS_ARGUMENT_NAMES}
        self.loss_function = LossFunction(
            settings.pop("loss_type"),
            label_smoothing=args.label_smoothing_factor,
            num_classes=_num_classes_of(model),
            **settings,
        )
        super().__init__(model=model, args=args, compute_loss_func=self.loss_function, **kwargs)
        self._recorded: dict[str, Any] | None = None
        if self.model is not None:
            self._record_loss(self.model)

    # ---- the loss record in the model config ----------------------------------------------------------------
    def loss_record(self) -> dict[str, Any]:
        """What is written to ``config.hf_squareloss``: the resolved loss and its number of classes."""
        from . import __version__

        record = self.loss_function.config.to_dict()
        record["num_classes"] = self.loss_function.num_classes
        record["hf_squareloss_version"] = __version__
        return record

    def _record_loss(self, model: Any) -> None:
        config = getattr(self.accelerator.unwrap_model(model), "config", None)
        if config is None:
            return
        record = self.loss_record()
        setattr(config, CONFIG_KEY, record)
        self._recorded = record

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )
        if self._recorded is None or self._recorded.get("num_classes") != self.loss_function.num_classes:
            self._record_loss(self.model)  # first step with model_init, or a multiple-choice head
        return result

    # ---- resuming -------------------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any):
        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            checkpoint = get_last_checkpoint(self.args.output_dir)
        if isinstance(checkpoint, (str, os.PathLike)):
            self.check_resume_compatible(checkpoint)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def check_resume_compatible(self, checkpoint: str | os.PathLike) -> None:
        """Raise ``ValueError`` if ``checkpoint`` was trained with other loss settings than ``self.args``."""
        record = read_loss_record(checkpoint)
        if record is None:
            logger.warning(
                "checkpoint %s carries no %s record; cannot check its loss settings", checkpoint, CONFIG_KEY
            )
            return
        saved = LossConfig.from_dict(record)
        current = self.loss_function.resolve(record.get("num_classes") or self.loss_function.num_classes or 2)
        if not saved.same_loss(current):
            raise ValueError(
                f"cannot resume from {checkpoint}: it was trained with {saved.describe()}, these arguments ask "
                f"for {current.describe()}. Resume with the same loss settings, or start a new run in another "
                "output_dir."
            )
