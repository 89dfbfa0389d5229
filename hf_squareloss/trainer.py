"""``SquareLossTrainer``: a ``transformers.Trainer`` that trains with the loss chosen by ``loss_type``.

The loss itself (``compute_loss_func``, its normalisation and its record) is :class:`~hf_squareloss.LossFunction`
(:mod:`hf_squareloss.loss_function`). This Trainer adds what the stock one cannot know: it counts
``num_items_in_batch`` per head in training and evaluation alike (causal LMs on ``labels[..., 1:]`` whatever their
``loss_type`` says, CTC per utterance), so ``eval_loss`` is the training objective normalised as in training; it
reports ``eval_nll`` (and ``eval_perplexity`` for LM heads), the negative log-likelihood the model serves, on one
scale for every loss (:mod:`hf_squareloss.evaluation`); it builds the loss from ``self.args`` when training starts,
so that ``hyperparameter_search`` trains every trial with its own loss (:mod:`hf_squareloss.search`); and it saves
the record and its card with a PEFT adapter.

Stock transformers 5.x mis-scales BERT-family ``*ForSequenceClassification`` models under accumulation and data
parallel (their ``forward`` accepts ``**kwargs``, so the Trainer believes they normalise by ``num_items_in_batch``;
they return a per-micro-batch mean instead), and counts GPT-2's labels unshifted (its ``loss_type`` is ``None``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from torch import Tensor
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import HPSearchBackend, get_last_checkpoint

from . import heads
from .evaluation import NllMeter, nll_rows
from .loss_function import (
    LossFunction,
    _same_loss_temperature,
    divide,
    emulated_bf16_warning,
    make_compute_loss_func,
    read_loss_record,
)
from .registry import SEARCH, LossConfig, get_loss_spec, hidden_state_function
from .scores import read_record
from .search import default_objective, restore, snapshot, trial_loss_fields
from .training_args import (
    LOSS_ARGUMENT_NAMES,
    LossArgumentsMixin,
    SquareLossTrainingArguments,
    loss_argument_names,
)

__all__ = [
    "LossFunction",
    "SquareLossTrainer",
    "emulated_bf16_warning",
    "make_compute_loss_func",
    "read_loss_record",
]

logger = logging.getLogger(__name__)


class SquareLossTrainer(Trainer):
    """A :class:`~transformers.Trainer` that trains with the loss chosen by ``loss_type``.

    Works for any model that returns ``logits`` of shape ``(..., C)`` and takes integer ``labels`` (sequence,
    token, multiple-choice, image and audio classification heads); ``-100`` labels are ignored. Language-model and
    CTC heads are trained on the model's own targets (:mod:`hf_squareloss.heads`): shifted for causal LMs, as the
    model aligns them for seq2seq and masked LMs, the loss's CTC form (CTC, Tamed CTC) for ``*ForCTC``. PEFT models
    (LoRA...) train as the model they adapt. A loss that does not apply to the head fails when the Trainer is built.
    The resolved loss is logged when training starts.

    Loss settings come from ``args`` (a :class:`SquareLossTrainingArguments`; a plain ``TrainingArguments`` is
    converted). ``loss_type`` and any loss field of the arguments (``square_k``, ``square_m``, ``square_preset``,
    ``tce_alpha``, ``gce_q``, ``focal_gamma``...: ``<loss_type>_<param>``) may also be passed here: they are written
    into ``self.args``, which stays the one source of truth: the loss is built from ``self.args`` again when training
    starts (so a hyper-parameter search trial, or a change to ``trainer.args``, trains with its own loss).

    The resolved loss is recorded in ``model.config.hf_squareloss`` (and in a PEFT adapter's config) so that saved
    models, adapters, checkpoints and pushed repositories say how they were trained; resuming from a checkpoint
    recorded with other loss settings is an error. :meth:`create_model_card` (also called by ``push_to_hub``, and by
    :meth:`save_model` for a PEFT adapter, whose own card would describe nothing) writes a card that says the same,
    with the formula, how to read the outputs and the loss's paper.

    Evaluation reports ``eval_loss`` (the training objective, counted as in training), ``eval_nll`` and, for LM
    heads, ``eval_perplexity`` (:mod:`hf_squareloss.evaluation`).
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
        self.loss_function.from_hidden_states = bool(args.loss_from_hidden_states)
        if model is not None:
            self.loss_function.bind(model)  # a loss that does not apply to the head fails here
        self._recorded: dict[str, Any] | None = None
        self._nll: NllMeter | None = None
        self._loss_args_before_search: dict[str, Any] | None = None
        super().__init__(model=model, args=args, compute_loss_func=self.loss_function, **kwargs)
        self.add_callback(self.loss_function)  # binds the trained model and logs the loss at train start
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

    def _loss_from_args(
        self, origin: Mapping[str, str] | None = None, loss_type_origin: str | None = None
    ) -> None:
        """Build the loss from ``self.args`` (validated; checked against the model's head) and record it."""
        args = self.args
        if not isinstance(args, LossArgumentsMixin):
            return
        args.check_loss_fields()
        if args.loss_from_hidden_states:
            hidden_state_function(args.loss_type)  # a loss without that form fails now, not at the first step
        changed = self.loss_function.configure(
            args.loss_type, args.loss_settings(), origin=origin, loss_type_origin=loss_type_origin
        )
        self.loss_function.from_hidden_states = bool(args.loss_from_hidden_states)
        if self.model is not None:
            self.loss_function.bind(self.accelerator.unwrap_model(self.model))
            if changed or self._recorded is None:
                self._record_loss(self.model)

    # ---- heads: what the model's logits are compared with, and how many items a step has ------------------
    def _get_num_items_in_batch(self, batch_samples: list, device: Any) -> Any:
        """As the Trainer's, with the items counted per head (:func:`heads.item_targets`): causal LMs on
        ``labels[..., 1:]`` whatever their ``loss_type`` says, CTC per utterance. Training steps and evaluation
        steps both count here, so ``eval_loss`` is normalised as the training loss is."""
        head = self.loss_function.head
        if head is not None and head.kind in ("causal_lm", "ctc"):
            targets = []
            for batch in batch_samples:
                labels = batch.get("labels") if isinstance(batch, Mapping) else None
                if not isinstance(labels, Tensor):
                    return super()._get_num_items_in_batch(batch_samples, device)
                target = heads.item_targets(head, labels)
                targets.append({"labels": target, "shift_labels": target})
            batch_samples = targets
        return super()._get_num_items_in_batch(batch_samples, device)

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
        labels = inputs.get("labels")
        want_outputs = return_outputs or (self._nll is not None and labels is not None)
        try:
            if getattr(self.args, "loss_from_hidden_states", False) and model.training and not want_outputs:
                result = self._loss_from_hidden_states(model, inputs, num_items_in_batch)
            else:
                result = super().compute_loss(
                    model, inputs, return_outputs=want_outputs, num_items_in_batch=num_items_in_batch
                )
            if self._nll is not None and labels is not None:
                self._measure_nll(result[1], labels)
                result = result if return_outputs else result[0]
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
            return divide(total, heads.item_targets(head, labels).ne(LossFunction.ignore_index).sum())
        loss = divide(total, num_items_in_batch)
        if self.args.average_tokens_across_devices:  # as Trainer.compute_loss does with a compute_loss_func
            loss = loss * (
                self.accelerator.num_processes // self.get_tp_size()
                if self.args.n_gpu <= 1
                else self.args.n_gpu
            )
        return loss

    # ---- evaluation: the negative log-likelihood the model serves -------------------------------------------
    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """The Trainer's loop, plus ``{prefix}_nll`` and, for LM heads, ``{prefix}_perplexity``
        (:mod:`hf_squareloss.evaluation`)."""
        head = self.loss_function.head
        if head is None and self.model is not None:
            head = self.loss_function.bind(self.accelerator.unwrap_model(self.model))
        self._nll = NllMeter(head.kind if head else "classification", self.accelerator.gather_for_metrics)
        try:
            output = super().evaluation_loop(
                dataloader,
                description,
                prediction_loss_only=prediction_loss_only,
                ignore_keys=ignore_keys,
                metric_key_prefix=metric_key_prefix,
            )
            for key, value in self._nll.metrics(metric_key_prefix).items():
                output.metrics.setdefault(key, value)  # a compute_metrics number of that name is kept
        finally:
            self._nll = None
        return output

    def _measure_nll(self, outputs: Any, labels: Tensor) -> None:
        from .loss_function import _logits_of

        loss = self.loss_function
        logits = _logits_of(outputs)
        config = loss.resolve(logits.shape[-1])
        temperature = _same_loss_temperature(read_record(self.accelerator.unwrap_model(self.model)), config)
        sums, counts = nll_rows(
            loss.head,
            logits.detach(),
            labels,
            config,
            temperature=temperature,
            input_lengths=loss.input_lengths,
        )
        self._nll.add(sums, counts)

    # ---- hyper-parameter search -----------------------------------------------------------------------------
    def hyperparameter_search(
        self,
        hp_space=None,
        compute_objective=None,
        n_trials=20,
        direction="minimize",
        backend=None,
        hp_name=None,
        **kwargs,
    ):
        """:meth:`transformers.Trainer.hyperparameter_search`, with every loss field searchable (``loss_type``,
        ``square_k``, ``tce_alpha``...; see :mod:`hf_squareloss.search`). Each trial starts from the loss settings
        the arguments have now, and trains with the loss its values make. Without ``compute_objective`` the
        objective is :func:`hf_squareloss.search.default_objective`: the ``compute_metrics`` numbers as in
        transformers, else ``eval_nll`` (minimise), which, unlike ``eval_loss``, keeps its scale when the loss
        changes. The arguments' loss settings are put back when the search ends."""
        fields = loss_argument_names(type(self.args)) if isinstance(self.args, LossArgumentsMixin) else []
        self._loss_args_before_search = snapshot(self.args, fields)
        try:
            return super().hyperparameter_search(
                hp_space=hp_space,
                compute_objective=compute_objective or default_objective,
                n_trials=n_trials,
                direction=direction,
                backend=backend,
                hp_name=hp_name,
                **kwargs,
            )
        finally:
            restore(self.args, self._loss_args_before_search)
            self._loss_args_before_search = None
            self._loss_from_args()

    def _hp_search_setup(self, trial: Any) -> None:
        """The Trainer sets the trial's values on ``self.args`` here; the trial's loss is then built from them, with
        the values that came from the trial recorded as ``"search"``."""
        searching = self.hp_search_backend is not None and trial is not None
        if not searching:
            super()._hp_search_setup(trial)
            return
        if (
            self._loss_args_before_search is not None
        ):  # a conditional space must not inherit the last trial's values
            restore(self.args, self._loss_args_before_search)
        values: dict[str, Any] = {}
        if self.hp_search_backend == HPSearchBackend.OPTUNA:
            space = self.hp_space

            def recording_space(t: Any) -> dict[str, Any]:
                params = space(t)
                values.update(params)
                return params

            self.hp_space = recording_space
            try:
                super()._hp_search_setup(trial)
            finally:
                self.hp_space = space
        else:  # Ray Tune, W&B: the trial is the dict of values
            values.update(trial)
            super()._hp_search_setup(trial)
        fields = trial_loss_fields(values, loss_argument_names(type(self.args)))
        origin = {
            LOSS_ARGUMENT_NAMES[f]: SEARCH for f in fields if f != "loss_type" and f in LOSS_ARGUMENT_NAMES
        }
        if "label_smoothing_factor" in values:
            origin["label_smoothing"] = SEARCH
        self._loss_from_args(origin=origin, loss_type_origin=SEARCH if "loss_type" in fields else None)
        self._warn_unused_search_fields(fields)

    def _warn_unused_search_fields(self, fields: list[str]) -> None:
        if "loss_type" in fields:
            return  # a space over several losses sets every loss's fields; the trial's own loss takes its own
        own = set(get_loss_spec(self.args.loss_type).fields())
        unused = [f for f in fields if f != "loss_type" and f not in own]
        if unused:
            logger.warning(
                "hf_squareloss: the search sets %s, which loss_type=%r does not have: every trial trains with the "
                "same %s loss there (search loss_type too, or search %s's own fields: %s)",
                unused,
                self.args.loss_type,
                self.args.loss_type,
                self.args.loss_type,
                sorted(own),
            )

    # ---- saving: the card of a PEFT adapter -----------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The Trainer's ``save_model``. A PEFT model saves its adapter with the loss record in the adapter's config,
        and the folder gets this package's card (PEFT writes an empty template there) naming the base model."""
        super().save_model(output_dir, _internal_call=_internal_call)
        model = self.accelerator.unwrap_model(self.model) if self.model is not None else None
        if model is None or not heads.is_peft_model(model) or not self.args.should_save:
            return
        from .adapters import save_adapter_record

        folder = output_dir or self.args.output_dir
        save_adapter_record(folder, model)
        if not _internal_call or os.path.abspath(folder) == os.path.abspath(self.args.output_dir):
            from .trainer_card import create_model_card

            create_model_card(self, folder=folder)

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
    def train(
        self, resume_from_checkpoint: str | bool | None = None, trial: Any = None, *args: Any, **kwargs: Any
    ):
        self._loss_from_args()  # the loss of the arguments as they are now (a trial's are set in _hp_search_setup)
        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            checkpoint = get_last_checkpoint(self.args.output_dir)
        if isinstance(checkpoint, (str, os.PathLike)) and trial is None:
            self.check_resume_compatible(checkpoint)
        return super().train(resume_from_checkpoint, trial, *args, **kwargs)

    def check_resume_compatible(self, checkpoint: str | os.PathLike) -> None:
        """Raise ``ValueError`` if ``checkpoint`` was trained with other loss settings than ``self.args``."""
        record = read_loss_record(checkpoint)
        if record is None:
            logger.warning(
                "checkpoint %s carries no hf_squareloss record; cannot check its loss settings", checkpoint
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
