"""``SquareLossTrainer`` and the ``compute_loss_func`` for the stock ``Trainer``.

Normalisation. The loss of a training step is ``sum(per-item loss) / num_items_in_batch``, where
``num_items_in_batch`` is the number of items in the whole accumulated batch, over all processes: the non-ignored
labels, counted by :class:`SquareLossTrainer` per head (:mod:`.heads`: causal LMs on ``labels[..., 1:]``, CTC per
utterance). Hence one step with batch 16 equals batch 8 x 2 accumulation steps, and 2 processes x 8 equal
1 x 16, for every loss type, ``ce`` included. Stock transformers 5.x gets this wrong for BERT-family
``*ForSequenceClassification`` models: their ``forward`` accepts ``**kwargs``, so the Trainer believes they
normalise by ``num_items_in_batch``; they return a per-micro-batch mean instead, which the Trainer then neither
divides by the accumulation steps nor by the world size. It also counts GPT-2's labels unshifted (its
``loss_type`` is ``None``), so GPT-2's own loss is divided by one token too many per row.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from torch import Tensor
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from . import heads
from .environment import cpu_bf16_is_native
from .registry import LossConfig
from .scores import CONFIG_KEY, TEMPERATURE_KEY, temperature_of
from .training_args import LossArgumentsMixin, SquareLossTrainingArguments, loss_argument_names

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


class LossFunction(TrainerCallback):
    """A ``compute_loss_func`` for :class:`transformers.Trainer`: ``sum(per item) / num_items_in_batch``.

    ``params`` are the loss's parameters by their keyword in the registry (``k``, ``M``, ``preset`` for ``square``,
    ``alpha`` for ``tce``, ``q`` for ``gce``, ``gamma`` for ``focal``...). Hyper-parameters left as ``None`` take the
    registry's default; the square loss's are resolved from the number of classes, read from the logits on the first
    call (so multiple-choice heads, whose ``C`` is the number of choices, get the right preset). ``-100`` labels
    are ignored, as everywhere in ``transformers``.

    Bound to a model (:meth:`bind`, ``make_compute_loss_func(..., model=model)``, or as a callback at train start),
    it pairs logits and labels as the model's head does (:mod:`hf_squareloss.heads`: shifted for causal LMs, CTC
    for ``*ForCTC``) and writes the loss record ``config.hf_squareloss``. It is also a ``TrainerCallback``: in
    ``callbacks=[...]`` it binds to the model the Trainer trains (also with ``model_init``), records the loss and
    logs it when training starts.

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
    _warned_unbound = False

    def __init__(
        self,
        loss_type: str = "square",
        *,
        num_classes: int | None = None,
        label_smoothing: float = 0.0,
        **params: Any,
    ) -> None:
        # the loss's parameters by their keyword in the registry (k, M, preset; alpha; q; gamma...)
        self._settings = {**params, "label_smoothing": label_smoothing}
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

    def bind(self, model: Any) -> heads.Head:
        """Pair logits and labels as ``model``'s head does; ``ValueError`` if the loss does not apply to it."""
        head = heads.describe_head(model)
        heads.check_loss_type(head, self.loss_type)
        self.head = head
        num_classes = heads.num_classes(model)
        if num_classes is not None:
            self.resolve(num_classes)
        return head

    def record(self) -> dict[str, Any]:
        """What is written to ``config.hf_squareloss``: the resolved loss and its number of classes."""
        from . import __version__

        record = self.config.to_dict()
        record["num_classes"] = self.num_classes
        record["hf_squareloss_version"] = __version__
        return record

    def write_record(self, model: Any, *, keep_temperature: bool = True) -> dict[str, Any] | None:
        """Write :meth:`record` into ``model.config`` (so ``config.json``, checkpoints and cards carry it).

        A temperature fitted for the same loss (:mod:`hf_squareloss.calibration`) is kept, unless
        ``keep_temperature`` is False (training starts: the fit no longer holds).
        """
        config = getattr(getattr(model, "module", model), "config", None)
        if config is None:
            return None
        record = self.record()
        temperature = _same_loss_temperature(getattr(config, CONFIG_KEY, None), self.config)
        if keep_temperature and temperature is not None:
            record[TEMPERATURE_KEY] = temperature
        elif temperature is not None:
            logger.info(
                "training changes the model: its fitted temperature is dropped (calibrate again after)"
            )
        setattr(config, CONFIG_KEY, record)
        return record

    def describe(self) -> str:
        """One line: the model's head and the resolved loss with the provenance of its values."""
        head = self.head or heads.Head("classification", "the model")
        record = self.record()
        return (
            f"{head.model_name} ({head.kind} head, {self.num_classes or '?'} classes) trains with "
            f"loss_type={self.loss_type!r}: {self.config.describe()}; values from: {record.get('source')}"
        )

    # ---- TrainerCallback ------------------------------------------------------------------------------------
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
        return _divide(total, num_items_in_batch)

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
            head, logits, labels, self.input_lengths, alpha=float(config.params.get("alpha", 0.0))
        )
        if head.ctc_reduction == "sum":
            return total
        return _divide(total, utterances if num_items_in_batch is None else num_items_in_batch)


def _divide(total: Tensor, count: Tensor | int | float) -> Tensor:
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
        inner = getattr(model, "module", model)
        if head.kind == "causal_lm" and getattr(inner, "loss_type", None) != "ForCausalLM":
            from transformers.loss.loss_utils import LOSS_MAPPING, ForCausalLMLoss

            if LOSS_MAPPING.get(getattr(inner, "loss_type", None)) is not ForCausalLMLoss:
                inner.loss_type = "ForCausalLM"
    return loss


def read_loss_record(checkpoint_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``hf_squareloss`` record of a saved model or checkpoint folder (``None`` when it has none)."""
    path = os.path.join(checkpoint_dir, "config.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh).get(CONFIG_KEY)


def _same_loss_temperature(record: Any, loss: LossConfig) -> float | None:
    """The temperature of a loss ``record`` trained with ``loss``; None when absent, another loss or malformed."""
    if not isinstance(record, Mapping) or record.get(TEMPERATURE_KEY) is None:
        return None
    try:
        return temperature_of(record) if LossConfig.from_dict(record).same_loss(loss) else None
    except ValueError:
        return None


class SquareLossTrainer(Trainer):
    """A :class:`~transformers.Trainer` that trains with the loss chosen by ``loss_type``.

    Works for any model that returns ``logits`` of shape ``(..., C)`` and takes integer ``labels`` (sequence,
    token, multiple-choice, image and audio classification heads); ``-100`` labels are ignored. Language-model and
    CTC heads are trained on the model's own targets (:mod:`hf_squareloss.heads`): shifted for causal LMs, as the
    model aligns them for seq2seq and masked LMs, CTC or Tamed CTC for ``*ForCTC``. The resolved loss is logged
    when training starts.

    Loss settings come from ``args`` (a :class:`SquareLossTrainingArguments`; a plain ``TrainingArguments`` is
    converted). ``loss_type`` and any loss field of the arguments (``square_k``, ``square_m``, ``square_preset``,
    ``tce_alpha``, ``gce_q``, ``focal_gamma``...: ``<loss_type>_<param>``) may also be passed here: they are written
    into ``self.args``, which stays the one source of truth.

    The resolved loss is recorded in ``model.config.hf_squareloss`` so that saved models, checkpoints and pushed
    repositories say how they were trained; resuming from a checkpoint recorded with other loss settings is an
    error. :meth:`create_model_card` (also called by ``push_to_hub``) writes a card that says the same, with the
    formula, how to read the outputs and the loss's paper.
    """

    def __init__(
        self,
        model: Any = None,
        args: TrainingArguments | None = None,
        *,
        loss_type: str | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("compute_loss_func") is not None:
            raise ValueError(
                "SquareLossTrainer computes the loss from `loss_type`; do not pass `compute_loss_func` (to use "
                "your own loss, use transformers.Trainer)"
            )
        kwargs.pop("compute_loss_func", None)
        fields_of_args = loss_argument_names(type(args) if isinstance(args, LossArgumentsMixin) else None)
        overrides = {"loss_type": loss_type}
        overrides.update({name: kwargs.pop(name) for name in fields_of_args if name in kwargs})
        if args is None:
            args = SquareLossTrainingArguments(
                output_dir="trainer_output", **{k: v for k, v in overrides.items() if v is not None}
            )
        elif not isinstance(args, LossArgumentsMixin):
            args = SquareLossTrainingArguments.from_training_arguments(args, **overrides)
        else:
            for name, value in overrides.items():
                if value is not None:
                    setattr(args, name, value)
        args.check_loss_fields()  # validates the (possibly updated) settings
        args.loss_config()
        self.loss_function = LossFunction(
            args.loss_type, num_classes=heads.num_classes(model), **args.loss_settings()
        )
        self.loss_function.counts_items = True
        if model is not None:
            self.loss_function.bind(model)  # a loss that does not apply to the head fails here
        super().__init__(model=model, args=args, compute_loss_func=self.loss_function, **kwargs)
        self.add_callback(self.loss_function)  # binds the trained model and logs the loss at train start
        self._recorded: dict[str, Any] | None = None
        if self.model is not None:
            if model is None:  # made by model_init
                self.loss_function.bind(self.model)
            self._record_loss(self.model)
        if args.loss_from_hidden_states and self.model is not None:
            from . import hidden_states

            hidden_states.output_layer(self.model)  # a model without a linear output layer fails here

    # ---- the loss record in the model config ----------------------------------------------------------------
    def loss_record(self) -> dict[str, Any]:
        """What is written to ``config.hf_squareloss``: the resolved loss and its number of classes."""
        return self.loss_function.record()

    def _record_loss(self, model: Any) -> None:
        record = self.loss_function.write_record(self.accelerator.unwrap_model(model))
        if record is not None:
            self._recorded = record

    # ---- heads: what the model's logits are compared with, and how many items a step has ------------------
    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """As the Trainer's, with ``num_items_in_batch`` counted per head (:func:`heads.item_targets`): causal LMs
        on ``labels[..., 1:]`` whatever their ``loss_type`` says, CTC per utterance."""
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        head = self.loss_function.head
        if num_items_in_batch is None or head is None or head.kind not in ("causal_lm", "ctc"):
            return batch_samples, num_items_in_batch
        # the Trainer's own counting (gathered over processes) on the items of this head
        targets = [heads.item_targets(head, batch["labels"]) for batch in batch_samples]
        return batch_samples, self._get_num_items_in_batch(
            [{"labels": t, "shift_labels": t} for t in targets], device
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.loss_function.head is None:
            self.loss_function.bind(self.accelerator.unwrap_model(model))
        head = self.loss_function.head
        unwrapped = None
        if head.kind == "seq2seq" and "labels" in inputs and "decoder_input_ids" not in inputs:
            # the model builds them from `labels`, which the Trainer withholds from it when it computes the loss
            unwrapped = self.accelerator.unwrap_model(model)
            inputs = {**inputs, "decoder_input_ids": heads.decoder_input_ids(unwrapped, inputs["labels"])}
        if head.kind == "ctc":
            unwrapped = unwrapped or self.accelerator.unwrap_model(model)
            self.loss_function.input_lengths = heads.ctc_input_lengths(unwrapped, inputs)
        try:
            if getattr(self.args, "loss_from_hidden_states", False) and model.training and not return_outputs:
                result = self._loss_from_hidden_states(model, inputs, num_items_in_batch)
            else:
                result = super().compute_loss(
                    model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
                )
        finally:
            self.loss_function.input_lengths = None
        if self._recorded is None or self._recorded.get("num_classes") != self.loss_function.num_classes:
            self._record_loss(self.model)  # first step with model_init, or a multiple-choice head
        return result

    def _loss_from_hidden_states(self, model, inputs, num_items_in_batch=None) -> Tensor:
        """The training loss from the output layer's input and weight (``args.loss_from_hidden_states``), normalised
        as :class:`LossFunction` normalises the loss of the logits."""
        from . import hidden_states

        inputs = dict(inputs)
        labels = inputs.pop("labels", None)
        if labels is None:
            raise ValueError(
                f"loss_type={self.loss_function.loss_type!r} needs `labels` in the batch; the model received none"
            )
        unwrapped = self.accelerator.unwrap_model(model)
        head = self.loss_function.head
        if head.kind == "ctc":
            raise ValueError(
                f"{head.model_name}: CTC heads have no loss from hidden states; train through the logits"
            )
        layer = hidden_states.output_layer(unwrapped)
        if not getattr(self, "_output_layer_checked", False):
            hidden_states.check_output_layer_is_last(unwrapped, inputs, layer)
            self._output_layer_checked = True
        config = self.loss_function.resolve(layer.out_features)
        shift = head.kind == "causal_lm"  # position t predicts label t + 1, as heads.align pairs the logits
        total = hidden_states.hidden_state_loss_sum(
            model, inputs, labels, config.loss_type, config.params, shift=shift
        )
        if num_items_in_batch is None:
            return _divide(total, heads.item_targets(head, labels).ne(LossFunction.ignore_index).sum())
        loss = _divide(total, num_items_in_batch)
        if self.args.average_tokens_across_devices:  # as Trainer.compute_loss does with a compute_loss_func
            loss = loss * (
                self.accelerator.num_processes // self.get_tp_size()
                if self.args.n_gpu <= 1
                else self.args.n_gpu
            )
        return loss

    # ---- the model card -------------------------------------------------------------------------------------
    def create_model_card(
        self,
        model_name: str | None = None,
        dataset_name: str | list[str] | None = None,
        tags: str | list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Write the model card to ``<output_dir>/README.md``: tags ``hf-squareloss`` and the loss type, the
        ``hf_squareloss`` metadata block, the formula, how to read the outputs, the training arguments, the last
        evaluation (a ``model-index`` when ``dataset_name`` is given) and the BibTeX of the loss. ``push_to_hub``
        passes its keyword arguments here. See :func:`hf_squareloss.trainer_card.create_model_card`."""
        from .trainer_card import create_model_card

        return create_model_card(self, model_name, dataset_name, tags, **kwargs)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        # checkpoints pushed during training (push_to_hub with a hub_strategy) carry this card, not the stock one
        if self.args.push_to_hub and self.is_world_process_zero():
            self.create_model_card()
        super()._save_checkpoint(model, trial)

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
