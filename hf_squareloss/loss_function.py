"""``LossFunction``: the loss a ``Trainer`` calls (``compute_loss_func``), bound to the model's head, and its record.

Normalisation. The loss of a training step is ``sum(per-item loss) / num_items_in_batch``, where
``num_items_in_batch`` is the number of items in the whole accumulated batch, over all processes: the non-ignored
labels, counted by :class:`~hf_squareloss.SquareLossTrainer` per head (:mod:`.heads`: causal LMs on
``labels[..., 1:]``, CTC per utterance), in training and in evaluation alike. Hence one step with batch 16 equals
batch 8 x 2 accumulation steps, and 2 processes x 8 equal 1 x 16, for every loss type, ``ce`` included.

The record. Bound to a model, the loss writes ``config.hf_squareloss`` (:func:`hf_squareloss.scores.store_record`):
the loss type, its resolved parameters, where each came from (``user``, ``default``, a preset, or ``search`` for a
hyper-parameter search trial), the number of classes, the head kind and the **form** the loss took there
(:data:`hf_squareloss.registry.FORMS`: the per-item formula on the ``logits``, the loss's ``ctc`` form, or computed
from the ``hidden_states``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from torch import Tensor
from transformers import TrainerCallback, TrainingArguments

from . import heads
from .adapters import ADAPTER_CONFIG_FILE
from .environment import cpu_bf16_is_native
from .registry import LossConfig
from .scores import CONFIG_KEY, TEMPERATURE_KEY, read_record, store_record, temperature_of

__all__ = [
    "LossFunction",
    "emulated_bf16_warning",
    "make_compute_loss_func",
    "read_loss_record",
]

# the name users configure (README: "on the logger hf_squareloss"); kept from when this lived in trainer.py
logger = logging.getLogger("hf_squareloss.trainer")


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


class LossFunction(TrainerCallback):
    """A ``compute_loss_func`` for :class:`transformers.Trainer`: ``sum(per item) / num_items_in_batch``.

    ``params`` are the loss's parameters by their keyword in the registry (``k``, ``M``, ``preset`` for ``square``,
    ``alpha`` for ``tce``, ``q`` for ``gce``, ``gamma`` for ``focal``...). Hyper-parameters left as ``None`` take the
    registry's default; the square loss's are resolved from the number of classes, read from the logits on the first
    call (so multiple-choice heads, whose ``C`` is the number of choices, get the right preset). ``-100`` labels
    are ignored, as everywhere in ``transformers``. ``origin`` says where given parameters came from when not from
    the user (``{"alpha": "search"}``), for the record.

    Bound to a model (:meth:`bind`, ``make_compute_loss_func(..., model=model)``, or as a callback: when the Trainer
    is built and when training starts), it pairs logits and labels as the model's head does
    (:mod:`hf_squareloss.heads`: shifted for causal LMs, the loss's CTC form for ``*ForCTC``) and writes the loss
    record. A loss that does not apply to the head is refused there, so a Trainer built with it fails at once.

    >>> from transformers import Trainer
    >>> loss = make_compute_loss_func("square", model=model)  # doctest: +SKIP
    >>> trainer = Trainer(model=model, args=args, compute_loss_func=loss, callbacks=[loss])  # doctest: +SKIP
    """

    ignore_index = -100
    head: heads.Head | None = None
    """The bound model's head (``None``: not bound, logits and labels are paired item for item)."""
    input_lengths: Tensor | None = None
    """CTC frames per utterance of the current batch (set by :class:`SquareLossTrainer` around each step)."""
    counts_items: bool = False
    """True when the trainer counts ``num_items_in_batch`` per head (:class:`SquareLossTrainer` does)."""
    from_hidden_states: bool = False
    """True when the trainer computes the training loss from hidden states (``loss_from_hidden_states``)."""
    loss_type_origin: str | None = None
    """Where ``loss_type`` came from when not from the user (``"search"``); recorded in ``sources``."""
    _warned_unbound = False

    def __init__(
        self,
        loss_type: str = "square",
        *,
        num_classes: int | None = None,
        label_smoothing: float = 0.0,
        origin: Mapping[str, str] | None = None,
        **params: Any,
    ) -> None:
        # the loss's parameters by their keyword in the registry (k, M, preset; alpha; q; gamma...)
        self._settings = {**params, "label_smoothing": label_smoothing}
        self._origin = dict(origin or {})
        self.loss_type = loss_type
        # validate now: bad settings fail at construction, not at the first step
        self.config: LossConfig = self._resolve(num_classes)
        self.num_classes = num_classes

    def _resolve(self, num_classes: int | None) -> LossConfig:
        return LossConfig.resolve(
            self.loss_type, num_classes=num_classes, origin=self._origin, **self._settings
        )

    def resolve(self, num_classes: int) -> LossConfig:
        """The loss for ``num_classes`` outputs (re-resolved when the number of classes changes)."""
        if num_classes != self.num_classes:
            self.config = self._resolve(num_classes)
            self.num_classes = num_classes
        return self.config

    def configure(
        self,
        loss_type: str,
        settings: Mapping[str, Any],
        *,
        origin: Mapping[str, str] | None = None,
        loss_type_origin: str | None = None,
    ) -> bool:
        """Take another loss or other settings (``settings`` by keyword, ``label_smoothing`` included); validated at
        once, and against the bound head. Returns whether anything changed."""
        settings = dict(settings)
        settings.setdefault("label_smoothing", 0.0)
        origin = dict(origin or {})
        if (loss_type, settings, origin, loss_type_origin) == (
            self.loss_type,
            self._settings,
            self._origin,
            self.loss_type_origin,
        ):
            return False
        config = LossConfig.resolve(loss_type, num_classes=self.num_classes, origin=origin, **settings)
        if self.head is not None:
            heads.check_loss_type(self.head, loss_type)
        self.loss_type, self._settings, self._origin = loss_type, settings, origin
        self.loss_type_origin, self.config = loss_type_origin, config
        return True

    def bind(self, model: Any) -> heads.Head:
        """Pair logits and labels as ``model``'s head does; ``ValueError`` if the loss does not apply to it."""
        head = heads.describe_head(model)
        heads.check_loss_type(head, self.loss_type)
        self.head = head
        num_classes = heads.num_classes(model)
        if num_classes is not None:
            self.resolve(num_classes)
        return head

    @property
    def form(self) -> str:
        """How the loss is computed for the bound head: ``"ctc"``, ``"hidden_states"`` or ``"logits"``."""
        if self.head is not None and self.head.kind == "ctc":
            return "ctc"
        return "hidden_states" if self.from_hidden_states else "logits"

    def record(self) -> dict[str, Any]:
        """The loss record: the resolved loss, its number of classes, the head and the form the loss takes there."""
        from . import __version__

        record = self.config.to_dict()
        if self.loss_type_origin is not None:
            record["sources"] = {"loss_type": self.loss_type_origin, **record["sources"]}
        record["num_classes"] = self.num_classes
        if self.head is not None:
            record["head"] = self.head.kind
        record["form"] = self.form
        record["hf_squareloss_version"] = __version__
        return record

    def write_record(self, model: Any, *, keep_temperature: bool = True) -> dict[str, Any] | None:
        """Write :meth:`record` as ``model``'s loss record (its config and, for a PEFT model, its adapter's config),
        so that ``config.json``, adapters, checkpoints and cards carry it.

        A temperature fitted for the same loss (:mod:`hf_squareloss.calibration`) is kept, unless
        ``keep_temperature`` is False (training starts: the fit no longer holds).
        """
        inner = getattr(model, "module", model)
        if getattr(inner, "config", None) is None and not heads.is_peft_model(inner):
            return None
        record = self.record()
        temperature = _same_loss_temperature(read_record(inner), self.config)
        if keep_temperature and temperature is not None:
            record[TEMPERATURE_KEY] = temperature
        elif temperature is not None:
            logger.info(
                "training changes the model: its fitted temperature is dropped (calibrate again after)"
            )
        store_record(inner, record)
        return record

    def describe(self) -> str:
        """One line: the model's head and the resolved loss with the provenance of its values."""
        head = self.head or heads.Head("classification", "the model")
        record = self.record()
        what = self.config.describe()
        if self.form == "ctc":
            what = f"{self.config.spec.ctc.name} ({what})"
        elif self.form == "hidden_states":
            what += ", computed from the hidden states"
        sources = record.get("sources") or {}
        origin = f"loss_type from {sources['loss_type']}; " if "loss_type" in sources else ""
        return (
            f"{head.model_name} ({head.kind} head, {self.num_classes or '?'} classes) trains with "
            f"loss_type={self.loss_type!r}: {what}; {origin}values from: {record.get('source')}"
        )

    # ---- TrainerCallback ------------------------------------------------------------------------------------
    def on_init_end(self, args, state, control, model=None, **kwargs):
        if model is not None:  # the Trainer is built: a loss that does not apply to the head fails here
            self.bind(model)
            self.write_record(model)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None:
            self.bind(model)
            self.write_record(model, keep_temperature=False)
        if state.is_world_process_zero:
            _announce(args, "hf_squareloss: " + self.describe())
            warning = emulated_bf16_warning(args)
            if warning:
                logger.warning(warning)

    # ---- the loss -------------------------------------------------------------------------------------------
    def __call__(
        self, outputs: Any, labels: Tensor | None, num_items_in_batch: Tensor | int | None = None
    ) -> Tensor:
        if labels is None:
            raise ValueError(
                f"loss_type={self.loss_type!r} needs `labels` in the batch; the model received none (check "
                "the dataset's label column and `label_names`)"
            )
        logits = _logits_of(outputs)
        head = self.head
        if head is None:
            if "CausalLM" in type(outputs).__name__:
                raise ValueError(
                    f"{type(outputs).__name__} comes from a causal-LM or CTC head, whose labels the model aligns "
                    "itself (next-token targets, or CTC label sequences); bind the loss to the model: "
                    "make_compute_loss_func(loss_type, model=model), or use SquareLossTrainer"
                )
            if not self._warned_unbound:
                self._warned_unbound = True
                logger.warning(
                    "hf_squareloss: the loss function is not bound to a model, so the model config gets no "
                    "`%s` record; pass make_compute_loss_func(..., model=model) or callbacks=[loss]",
                    CONFIG_KEY,
                )
            head = heads.Head("classification", "the model")
        if head.kind == "ctc":
            return self._ctc(head, logits, labels, num_items_in_batch)
        logits, labels = heads.align(head, logits, labels)
        config = self.resolve(logits.shape[-1])
        if num_items_in_batch is None:
            return config(logits, labels, ignore_index=self.ignore_index, reduction="mean")
        total = config(logits, labels, ignore_index=self.ignore_index, reduction="sum")
        return divide(total, num_items_in_batch)

    def ctc_transform(self, config: LossConfig) -> Any:
        """The per-utterance transform of the CTC negative log-likelihood for ``config`` (its CTC form)."""
        form = config.spec.ctc
        params = dict(config.params)
        return lambda nll: form.transform(nll, **params)

    def _ctc(self, head: heads.Head, logits: Tensor, labels: Tensor, num_items_in_batch: Any) -> Tensor:
        if not self.counts_items:
            raise ValueError(
                f"{head.model_name}: CTC heads train with SquareLossTrainer, which passes the frame lengths of "
                "each batch and counts utterances for num_items_in_batch (the stock Trainer counts label tokens, "
                "while CTC averages utterances)"
            )
        config = self.resolve(logits.shape[-1])
        if config.params.get("label_smoothing"):
            raise ValueError(
                f"{head.model_name}: label smoothing has no CTC form; set label_smoothing_factor=0"
            )
        total, utterances = heads.ctc_loss(
            head, logits, labels, self.input_lengths, transform=self.ctc_transform(config)
        )
        if head.ctc_reduction == "sum":
            return total
        return divide(total, utterances if num_items_in_batch is None else num_items_in_batch)


def divide(total: Tensor, count: Tensor | int | float) -> Tensor:
    """``total / count`` with ``count`` at least 1, on ``total``'s device and dtype."""
    if isinstance(count, Tensor):
        return total / count.to(device=total.device, dtype=total.dtype).clamp_min(1)
    return total / max(float(count), 1.0)


def emulated_bf16_warning(args: TrainingArguments) -> str | None:
    """A warning when ``args`` ask for bf16 mixed precision on a CPU that has no native bf16 (see
    :func:`hf_squareloss.environment.cpu_bf16_is_native`), else ``None``."""
    if not getattr(args, "bf16", False) or args.device.type != "cpu" or cpu_bf16_is_native() is not False:
        return None
    return (
        "hf_squareloss: bf16=True on a CPU without native bf16 (no AVX512-BF16 or AMX): its bf16 matrix products "
        "are emulated and usually much slower than float32; train without --bf16 on this machine "
        "(recipes/benchmarks/bench_precision.py measures the ratio)"
    )


_HANDLER: logging.Handler | None = None


def _announce(args: TrainingArguments, message: str) -> None:
    """Log ``message`` at INFO, visible by default: unless the application configured this module's logger, its
    level follows ``args.log_level`` (INFO when that is ``passive``) and it gets a stream handler if no logger
    above it has one."""
    global _HANDLER
    if logger.level == logging.NOTSET or (_HANDLER is not None and _HANDLER in logger.handlers):
        level = getattr(args, "log_level", "passive")
        logger.setLevel(logging.INFO if level == "passive" else args.get_process_log_level())
        if not logger.hasHandlers():
            _HANDLER = logging.StreamHandler()
            logger.addHandler(_HANDLER)
    logger.info(message)


def make_compute_loss_func(loss_type: str = "square", *, model: Any = None, **settings: Any) -> LossFunction:
    """The loss of ``loss_type`` for ``Trainer(compute_loss_func=...)``; ``settings`` as in :class:`LossFunction`
    (e.g. ``make_compute_loss_func("gce", q=0.5)``).

    With ``model``, the loss is bound to it (its head decides how logits and labels pair up) and recorded in
    ``model.config.hf_squareloss`` at once, as :class:`SquareLossTrainer` does. A causal LM whose ``loss_type``
    does not route to transformers' causal loss (GPT-2's is ``None``) gets ``model.loss_type = "ForCausalLM"``,
    the loss it falls back to anyway, so that the stock Trainer counts ``num_items_in_batch`` on the shifted
    labels: otherwise it counts one token too many per row and takes too small a step.
    """
    loss = LossFunction(loss_type, **settings)
    if model is not None:
        head = loss.bind(model)
        loss.write_record(model)
        inner = heads.unwrap(model)
        if head.kind == "causal_lm" and getattr(inner, "loss_type", None) != "ForCausalLM":
            from transformers.loss.loss_utils import LOSS_MAPPING, ForCausalLMLoss

            if LOSS_MAPPING.get(getattr(inner, "loss_type", None)) is not ForCausalLMLoss:
                inner.loss_type = "ForCausalLM"
    return loss


def read_loss_record(checkpoint_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``hf_squareloss`` record of a saved model or checkpoint folder, or of a saved PEFT adapter (its
    ``adapter_config.json``); ``None`` when it has none."""
    for name, key in (("config.json", None), (ADAPTER_CONFIG_FILE, "auto_mapping")):
        path = os.path.join(checkpoint_dir, name)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if key is not None:
            data = data.get(key) or {}
        record = data.get(CONFIG_KEY) if isinstance(data, Mapping) else None
        if record is not None:
            return record
    return None


def _same_loss_temperature(record: Any, loss: LossConfig) -> float | None:
    """The temperature of a loss ``record`` trained with ``loss``; None when absent, another loss or malformed."""
    if not isinstance(record, Mapping) or record.get(TEMPERATURE_KEY) is None:
        return None
    try:
        return temperature_of(record) if LossConfig.from_dict(record).same_loss(loss) else None
    except ValueError:
        return None
