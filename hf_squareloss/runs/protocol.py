"""The training protocols of the papers, as ``TrainingArguments`` settings and callbacks.

``early_stopping`` (Hui & Belkin's main protocol, and the TCE paper's): evaluate after every epoch, stop once the
validation metric has not improved for ``patience`` epochs, and keep the best model.

``same_epochs`` (Hui & Belkin's second protocol): train for the number of epochs that a finished reference run
(usually cross-entropy) used, with the same learning-rate schedule. By default that is the epoch of the model the
reference kept (``reference_epochs="best"``); ``"trained"`` takes every epoch it ran. The reference must be the
same task on the same training data (subset and label noise); differing optimisation settings are reported.

``fixed_epochs``: ``--num_train_epochs`` with the evaluation and save strategies given on the command line.

Every recipe offers these three; what "the same training data" means is the recipe's (:class:`SameData`). A recipe may
add protocols of its own around :func:`configure_protocol` (the image recipe's ``tce_paper``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import EarlyStoppingCallback, TrainerCallback
from transformers.trainer_utils import IntervalStrategy

from ..training_args import SquareLossTrainingArguments
from .arguments import LabelNoiseArguments, ProtocolArguments
from .callbacks import StopAtEpochCallback
from .folder import RUN_ARGS_FILE, read_json, read_summary

__all__ = [
    "LABEL_NOISE_KEYS",
    "ProtocolSetup",
    "ReferenceRun",
    "SameData",
    "configure_protocol",
    "read_reference_run",
]

logger = logging.getLogger(__name__)

LABEL_NOISE_KEYS = ("label_noise", "label_noise_type", "label_noise_exact", "noise_seed")
"""The label-noise settings (``run_args.json`` section ``label_noise``): part of a run's training data."""
# optimisation settings the protocol expects to be shared; a difference is reported, not refused
_TRAINING_KEYS = (
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "seed",
)


@dataclass(frozen=True)
class SameData:
    """The data settings (section ``data`` of ``run_args.json``) a ``same_epochs`` reference must share with the run.

    The label-noise settings (:data:`LABEL_NOISE_KEYS`) are always part of it. ``path_keys`` are compared as
    resolved paths.
    """

    data_keys: tuple[str, ...]
    path_keys: tuple[str, ...] = ()

    def sections(self) -> dict[str, tuple[str, ...]]:
        """Section of ``run_args.json`` -> the keys that must be equal."""
        return {"data": self.data_keys, "label_noise": LABEL_NOISE_KEYS}


@dataclass(frozen=True)
class ReferenceRun:
    """What ``same_epochs`` needs from a finished run."""

    path: str
    task: str
    loss_type: str
    epochs: int
    """Epochs to train for, per ``reference_epochs``."""
    schedule_epochs: float
    """The reference's ``num_train_epochs``: the horizon of its learning-rate schedule."""
    args: dict[str, Any] = field(default_factory=dict)


def _whole_epochs(value: Any, what: str, path: str) -> int:
    if value is None or not math.isfinite(float(value)) or float(value) < 1:
        raise ValueError(
            f"reference run {path}: {what} is {value!r}; same_epochs needs at least one whole epoch"
        )
    if abs(float(value) - round(float(value))) > 1e-6:
        raise ValueError(
            f"reference run {path}: {what} is {value}, not a whole number; same_epochs needs a reference "
            "evaluated once per epoch"
        )
    return round(float(value))


def read_reference_run(path: str, reference_epochs: str = "best") -> ReferenceRun:
    """Read a finished run of a recipe for ``same_epochs``; ``ValueError`` when it is unusable."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ValueError(f"--reference_run {path}: no such folder")
    summary = read_summary(folder)  # ValueError when not finished
    args_path = folder / RUN_ARGS_FILE
    if not args_path.is_file():
        raise ValueError(f"--reference_run {path}: no {RUN_ARGS_FILE}; it was not written by this recipe")
    args = read_json(args_path)
    if not summary.get("did_train"):
        raise ValueError(f"--reference_run {path}: that run did not train (no --do_train)")
    key = "model_epoch" if reference_epochs == "best" else "epochs_trained"
    epochs = _whole_epochs(summary.get(key), key, str(folder))
    return ReferenceRun(
        path=str(folder.resolve()),
        task=summary["task"],
        loss_type=summary["loss"]["loss_type"],
        epochs=epochs,
        schedule_epochs=float(args["training"]["num_train_epochs"]),
        args=args,
    )


def _check_reference(
    reference: ReferenceRun,
    data_args: Any,
    noise_args: LabelNoiseArguments,
    training_args: SquareLossTrainingArguments,
    same_data: SameData,
) -> list[str]:
    """Refuse a reference trained on other data; return the optimisation settings that differ."""
    if reference.task != data_args.task_name:
        raise ValueError(
            f"--reference_run {reference.path} is a {reference.task} run; this run is {data_args.task_name}: "
            "same_epochs compares runs of the same task"
        )
    mine = {"data": dataclasses.asdict(data_args), "label_noise": dataclasses.asdict(noise_args)}
    for section, keys in same_data.sections().items():
        theirs = reference.args.get(section, {})
        for key in keys:
            a, b = mine[section].get(key), theirs.get(key)
            if key in same_data.path_keys and a and b:
                a, b = str(Path(a).expanduser().resolve()), str(Path(b).expanduser().resolve())
            if a != b:
                raise ValueError(
                    f"--reference_run {reference.path} was trained with {key}={b!r}, this run asks for {a!r}: "
                    "same_epochs needs the same training data"
                )
    theirs = reference.args.get("training", {})
    return [
        f"{key}: reference {theirs.get(key)!r}, this run {getattr(training_args, key)!r}"
        for key in _TRAINING_KEYS
        if key in theirs and theirs.get(key) != getattr(training_args, key)
    ]


@dataclass
class ProtocolSetup:
    """The training arguments to use, the callbacks to add, and a record of the protocol for the run's files."""

    training_args: SquareLossTrainingArguments
    callbacks: list[TrainerCallback]
    record: dict[str, Any]


def _early_stopping(
    protocol_args: ProtocolArguments, training_args: SquareLossTrainingArguments, main_metric: str
) -> tuple[dict[str, Any], list[TrainerCallback], dict[str, Any]]:
    """Overrides, callbacks and record entries of ``early_stopping``."""
    strategy = training_args.eval_strategy
    if strategy == IntervalStrategy.NO:
        strategy = IntervalStrategy.EPOCH
    overrides: dict[str, Any] = {
        "eval_strategy": strategy,
        "save_strategy": strategy.value,
        "load_best_model_at_end": True,
    }
    if strategy == IntervalStrategy.STEPS:
        overrides["save_steps"] = training_args.eval_steps
        logger.warning(
            "early stopping counts evaluations every %s steps, not epochs", training_args.eval_steps
        )
    if training_args.metric_for_best_model is None:
        overrides.update(metric_for_best_model=main_metric, greater_is_better=True)
    overrides["restore_callback_states_from_checkpoint"] = True
    callbacks: list[TrainerCallback] = [EarlyStoppingCallback(early_stopping_patience=protocol_args.patience)]
    return overrides, callbacks, {"patience": protocol_args.patience}


def _same_epochs(
    protocol_args: ProtocolArguments,
    training_args: SquareLossTrainingArguments,
    data_args: Any,
    noise_args: LabelNoiseArguments,
    same_data: SameData,
) -> tuple[dict[str, Any], list[TrainerCallback], dict[str, Any]]:
    """Overrides, callbacks and record entries of ``same_epochs``."""
    if training_args.max_steps is not None and training_args.max_steps > 0:
        raise ValueError("--protocol same_epochs counts epochs; do not pass --max_steps")
    reference = read_reference_run(protocol_args.reference_run or "", protocol_args.reference_epochs)
    differences = _check_reference(reference, data_args, noise_args, training_args, same_data)
    for difference in differences:
        logger.warning("same_epochs: reference run differs in %s", difference)
    if reference.epochs > reference.schedule_epochs + 1e-6:
        raise ValueError(
            f"--reference_run {reference.path}: {reference.epochs} epochs exceed its num_train_epochs "
            f"{reference.schedule_epochs:g}"
        )
    if training_args.num_train_epochs != reference.schedule_epochs:
        logger.warning(
            "same_epochs: num_train_epochs set to the reference's %g (was %g) so that the learning-rate "
            "schedule is the same",
            reference.schedule_epochs,
            training_args.num_train_epochs,
        )
    overrides = {
        "num_train_epochs": reference.schedule_epochs,
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "load_best_model_at_end": False,
    }
    record = {
        "reference_run": reference.path,
        "reference_loss_type": reference.loss_type,
        "reference_epochs": protocol_args.reference_epochs,
        "stop_epoch": reference.epochs,
        "schedule_epochs": reference.schedule_epochs,
        "reference_differences": differences,
    }
    return overrides, [StopAtEpochCallback(reference.epochs)], record


def configure_protocol(
    protocol_args: ProtocolArguments,
    training_args: SquareLossTrainingArguments,
    *,
    main_metric: str,
    data_args: Any,
    noise_args: LabelNoiseArguments,
    same_data: SameData,
) -> ProtocolSetup:
    """Apply ``protocol_args`` to ``training_args`` (a new object is returned; the input is not changed).

    ``main_metric``: the validation metric that ``early_stopping`` watches unless ``--metric_for_best_model`` is
    given; ``same_data``: what ``same_epochs`` compares with its reference run (``data_args`` and ``noise_args`` are
    this run's).
    """
    name = protocol_args.protocol
    if not training_args.do_train:
        if name == "same_epochs":
            raise ValueError("--protocol same_epochs shapes training; pass --do_train")
        return ProtocolSetup(training_args, [], {"name": "evaluation_only"})
    if name == "fixed_epochs":
        return ProtocolSetup(training_args, [], {"name": name})
    if name == "early_stopping":
        overrides, callbacks, entries = _early_stopping(protocol_args, training_args, main_metric)
    else:
        overrides, callbacks, entries = _same_epochs(
            protocol_args, training_args, data_args, noise_args, same_data
        )
    record: dict[str, Any] = {"name": name, **entries}
    if training_args.save_total_limit is None:
        overrides["save_total_limit"] = 1  # the Trainer keeps the best checkpoint besides the last one
    new_args = dataclasses.replace(training_args, **overrides)
    record["metric_for_best_model"] = new_args.metric_for_best_model
    record["greater_is_better"] = new_args.greater_is_better
    record["overrides"] = {k: getattr(v, "value", v) for k, v in overrides.items()}
    return ProtocolSetup(new_args, callbacks, record)
