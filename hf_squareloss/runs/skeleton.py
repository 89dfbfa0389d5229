"""One run of a recipe, in the same steps for every task family: parse -> resume -> prepare -> train -> save ->
evaluate -> predict -> summary.

A task package subclasses :class:`RecipeRun` and fills its hooks: its arguments, its protocol, its data, model and
trainer (:meth:`RecipeRun.prepare`), how it scores them, and what its summary adds. The steps themselves, the files
of the run folder (:mod:`.folder`), the lock, the resumption from the last complete checkpoint, the progress lines
and the summary written last are this module's, the same for every recipe. :mod:`hf_squareloss.glue.run` and
:mod:`hf_squareloss.vision.run` are the two recipes built on it.
"""

from __future__ import annotations

import logging
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..training_args import SquareLossTrainingArguments
from .arguments import LabelNoiseArguments, ProtocolArguments, parse_recipe_args
from .callbacks import EpochProgressCallback
from .console import say
from .folder import (
    DATASET_FILE,
    LABEL_NOISE_FILE,
    RELIABILITY_FILE,
    RUN_ARGS_FILE,
    SUMMARY_FILE,
    eval_history,
    last_complete_checkpoint,
    write_json,
)
from .lifecycle import configure_logging, end_process_group, run_once
from .protocol import ProtocolSetup
from .records import RunTask, check_resumable, run_args_record, run_summary
from .scoring import ServedMetrics, calibrate

__all__ = [
    "Prepared",
    "RecipeRun",
    "RunArgs",
    "RunState",
    "run_args_of",
    "run_command",
    "run_recipe",
    "score",
]


@dataclass
class RunArgs:
    """The parsed command line of a run, by argument group, in the order of every recipe's parser."""

    model: Any
    data: Any
    noise: LabelNoiseArguments
    protocol: ProtocolArguments
    training: SquareLossTrainingArguments
    argv: Sequence[str] | None = None
    """The command line they were parsed from (``None``: ``sys.argv[1:]``), recorded in ``run_args.json``."""


@dataclass
class RunState:
    """Where a run is: its folder and process, the protocol, its record, the checkpoint it resumes from, its clock."""

    output_dir: Path
    main_process: bool
    setup: ProtocolSetup
    run_args: dict[str, Any]
    """What ``run_args.json`` holds."""
    started: float
    progress: EpochProgressCallback
    last_checkpoint: str | None = None

    @property
    def callbacks(self) -> list[Any]:
        """The callbacks the trainer must get: the protocol's and the progress lines."""
        return [*self.setup.callbacks, self.progress]


@dataclass
class Prepared:
    """What :meth:`RecipeRun.prepare` builds: the task, the trainer and the data it runs on, and their records."""

    task: RunTask
    trainer: Any
    train_dataset: Any | None
    eval_dataset: Any | None
    """The validation split the protocol selects the model on."""
    dataset_record: dict[str, Any]
    """What ``dataset.json`` holds."""
    noise_record: dict[str, Any] | None
    """What ``label_noise.json`` holds (``None`` without label noise)."""
    header: str
    """The progress line that opens the run (task, loss, protocol, ...)."""
    test_dataset: Any | None = None
    """The split ``--do_predict`` scores, when the recipe has one."""


class RecipeRun(ABC):
    """One run of a recipe: :func:`run_recipe` calls its hooks in the order of the steps."""

    argument_classes: ClassVar[tuple[type, ...]]
    """The recipe's argument groups: model, data, label noise, protocol, training (that order)."""
    resume_keys: ClassVar[Mapping[str, tuple[str, ...]]]
    """What a resumed run must share with the interrupted one (:func:`~hf_squareloss.runs.records.resume_keys`)."""
    logger: ClassVar[logging.Logger]

    def __init__(self, args: RunArgs) -> None:
        self.args = args
        self.metrics: ServedMetrics | None = None
        """The trainer's ``compute_metrics`` when it scores the served probabilities (set by :meth:`prepare`): then
        ``--calibrate`` fits a temperature and the validation split gets a reliability diagram."""

    @property
    @abstractmethod
    def main_metric(self) -> str:
        """The validation metric of the progress lines, and of model selection unless the protocol says."""

    @property
    def model_name(self) -> str | None:
        """The model the run starts from, as the summary names it."""
        return self.args.model.model_name_or_path

    @abstractmethod
    def check(self) -> None:
        """Refuse, with ``ValueError``, what the run cannot do, before anything is written."""

    @abstractmethod
    def configure(self) -> ProtocolSetup:
        """The protocol's training arguments, callbacks and record (see :mod:`hf_squareloss.runs.protocol`)."""

    @abstractmethod
    def write_card(self, run_dir: Path) -> Path:
        """Write the model card of the finished run folder; return its path."""

    @abstractmethod
    def prepare(self, state: RunState) -> Prepared:
        """Data, model and trainer (with ``state.callbacks``), on every process."""

    @property
    def validation_split(self) -> str:
        """The name of the split the model is selected and calibrated on, as the progress lines say it."""
        return "validation"

    def after_training(self, prepared: Prepared, state: RunState) -> dict[str, Any] | None:
        """Work on the kept model before it is scored; returns the summary's ``calibration`` entry (or None).

        With ``--calibrate``: one temperature fitted on the validation split and saved with the model. Without it,
        a model calibrated before (evaluated with ``--do_eval`` alone) is scored with its own temperature."""
        from ..scores import temperature_of

        metrics, trainer = self.metrics, prepared.trainer
        if metrics is None:
            return None
        if not self.args.protocol.calibrate:
            metrics.temperature = temperature_of(trainer.accelerator.unwrap_model(trainer.model))
            return None
        calibration = calibrate(trainer, prepared.eval_dataset, metrics)
        trainer.save_model()  # the saved config now carries the temperature
        if state.main_process:
            say(
                f"temperature {calibration['temperature']:.4g} ({calibration['status']}) fitted on "
                f"{self.validation_split}: NLL {calibration['nll_at_one']:.4f} -> {calibration['nll']:.4f}"
            )
        return calibration

    def evaluate(self, prepared: Prepared, state: RunState) -> dict[str, Any]:
        """``--do_eval``: score the kept model on the validation split (``eval_*``), and draw its reliability
        diagram."""
        metrics = score(prepared.trainer, prepared.eval_dataset, "eval")
        self.write_reliability_diagram(state, prepared.task.name)
        return metrics

    def write_reliability_diagram(self, state: RunState, title: str) -> None:
        """``reliability.png`` of the latest evaluation (main process; needs :attr:`metrics`)."""
        if state.main_process and self.metrics is not None and self.metrics.last is not None:
            self.metrics.write_reliability_diagram(
                state.output_dir / RELIABILITY_FILE, f"{title} {self.validation_split}"
            )

    def predict(self, prepared: Prepared, state: RunState) -> dict[str, Any]:
        """``--do_predict``: score the kept model on the test split (``test_*``)."""
        return score(prepared.trainer, prepared.test_dataset, "test")

    def summary_extras(self, prepared: Prepared, test_metrics: dict[str, Any]) -> dict[str, Any]:
        """Entries the recipe adds at the end of ``run_summary.json``."""
        return {}

    @abstractmethod
    def done_numbers(self, eval_metrics: dict[str, Any], test_metrics: dict[str, Any]) -> str | None:
        """The numbers of the closing progress line (``None``: no closing line)."""


def score(trainer: Any, dataset: Any, prefix: str) -> dict[str, Any]:
    """Evaluate the trainer's model on ``dataset``; log the metrics and save them as ``<prefix>_results.json``."""
    metrics = trainer.evaluate(eval_dataset=dataset, metric_key_prefix=prefix)
    metrics[f"{prefix}_samples"] = len(dataset)
    trainer.log_metrics(prefix, metrics)
    trainer.save_metrics(prefix, metrics)
    return metrics


def run_command(run_class: type[RecipeRun], argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv`` (default ``sys.argv[1:]``) with the recipe's argument groups, then :func:`run_recipe`; under
    ``torchrun``, the processes then leave together (:func:`~hf_squareloss.runs.lifecycle.end_process_group`)."""
    groups = parse_recipe_args(run_class.argument_classes, argv)
    summary = run_recipe(run_class(RunArgs(*groups, argv=argv)))
    end_process_group()
    return summary


def run_recipe(run: RecipeRun) -> dict[str, Any]:
    """The run on parsed arguments: checks, protocol, then the steps in the run folder (once, under its lock; the
    card and the push after, see :func:`~hf_squareloss.runs.lifecycle.run_once`). Returns the run's summary."""
    configure_logging(run.args.training, run.logger)
    _check(run)
    setup = run.configure()
    run.args.training = setup.training_args
    return run_once(setup.training_args, lambda: _steps(run, setup), run.write_card)


def run_args_of(run_class: type[RecipeRun], argv: Sequence[str]) -> dict[str, Any]:
    """What ``run_args.json`` would hold for the command ``argv``, without running it (nothing is written)."""
    run = run_class(RunArgs(*parse_recipe_args(run_class.argument_classes, argv), argv=argv))
    _check(run)
    setup = run.configure()
    args = run.args
    return run_args_record(
        argv, args.model, args.data, args.noise, args.protocol, setup.training_args, setup.record
    )


def _check(run: RecipeRun) -> None:
    """Every recipe's refusals, then the recipe's own (:meth:`RecipeRun.check`)."""
    if run.args.protocol.calibrate and not run.args.training.do_eval:
        raise ValueError(
            "--calibrate fits the temperature on the validation set and evaluates with it: add --do_eval"
        )
    run.check()


def _steps(run: RecipeRun, setup: ProtocolSetup) -> dict[str, Any]:
    """resume -> prepare -> train -> save -> evaluate -> predict -> summary, in the locked run folder."""
    from transformers import set_seed

    training = run.args.training
    state = _resume(run, setup)
    set_seed(training.seed)
    prepared = run.prepare(state)
    _write_records(prepared, state)
    if state.main_process:
        say(prepared.header)
    history: list[dict[str, Any]] = []
    train_metrics: dict[str, Any] = {}
    if training.do_train:
        train_metrics = _train(prepared, state, training)
        history = eval_history(prepared.trainer.state.log_history)
    _detach(prepared.trainer, state.callbacks)
    calibration = run.after_training(prepared, state)
    eval_metrics = run.evaluate(prepared, state) if training.do_eval else {}
    test_metrics: dict[str, Any] = {}
    if training.do_predict and prepared.test_dataset is not None:
        test_metrics = run.predict(prepared, state)
    summary = _summary(run, prepared, state, history, train_metrics, eval_metrics, calibration)
    summary.update(run.summary_extras(prepared, test_metrics))
    _finish(run, state, summary, eval_metrics, test_metrics)
    return summary


def _resume(run: RecipeRun, setup: ProtocolSetup) -> RunState:
    """Record the run's arguments; when the folder holds an interrupted run, check that it is resumed with its own
    settings and find its last complete checkpoint."""
    args, training = run.args, run.args.training
    metric = setup.record.get("metric_for_best_model") or run.main_metric
    state = RunState(
        output_dir=Path(training.output_dir),
        main_process=training.process_index == 0,
        setup=setup,
        run_args=run_args_record(
            args.argv, args.model, args.data, args.noise, args.protocol, training, setup.record
        ),
        started=time.perf_counter(),
        progress=EpochProgressCallback(metric, bool(setup.record.get("greater_is_better", True))),
    )
    if state.output_dir.is_dir():
        check_resumable(state.output_dir, state.run_args, run.resume_keys)
        if training.do_train and training.resume_from_checkpoint is None:
            found = last_complete_checkpoint(state.output_dir, remove_incomplete=state.main_process)
            state.last_checkpoint = str(found) if found is not None else None
    if state.last_checkpoint is not None and state.main_process:
        say(f"resuming the interrupted run from {state.last_checkpoint}")
    if state.main_process:
        write_json(state.output_dir / RUN_ARGS_FILE, state.run_args)
    return state


def _detach(trainer: Any, callbacks: Sequence[Any]) -> None:
    """Take the protocol's and the progress callbacks off the trainer: the evaluations from here on are not part of
    training. A callback whose state a resumed run restored from its checkpoint was replaced by the trainer with a
    new object of its class; that one is taken off."""
    attached = trainer.callback_handler.callbacks
    for callback in callbacks:
        if any(cb is callback for cb in attached):
            trainer.remove_callback(callback)
        elif any(type(cb) is type(callback) for cb in attached):
            trainer.remove_callback(type(callback))


def _write_records(prepared: Prepared, state: RunState) -> None:
    """``dataset.json`` and, with label noise, ``label_noise.json`` (main process)."""
    if not state.main_process:
        return
    write_json(state.output_dir / DATASET_FILE, prepared.dataset_record)
    if prepared.noise_record is not None:
        write_json(state.output_dir / LABEL_NOISE_FILE, prepared.noise_record)


def _train(prepared: Prepared, state: RunState, training: SquareLossTrainingArguments) -> dict[str, Any]:
    """Train (from the checkpoint of an interrupted run), then save the kept model, its metrics and the state."""
    trainer = prepared.trainer
    result = trainer.train(resume_from_checkpoint=training.resume_from_checkpoint or state.last_checkpoint)
    trainer.save_model()  # model, tokenizer or image processor, and config (with the loss record)
    metrics = dict(result.metrics)
    metrics["train_samples"] = len(prepared.train_dataset)
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    return metrics


def _summary(
    run: RecipeRun,
    prepared: Prepared,
    state: RunState,
    history: list[dict[str, Any]],
    train_metrics: dict[str, Any],
    eval_metrics: dict[str, Any],
    calibration: dict[str, Any] | None,
) -> dict[str, Any]:
    """The run's summary (see :func:`~hf_squareloss.runs.records.run_summary`)."""
    return run_summary(
        prepared.task,
        prepared.trainer,
        run.args.training,
        state.setup.record,
        prepared.noise_record,
        prepared.dataset_record,
        history,
        train_metrics,
        eval_metrics,
        model_name=run.model_name,
        max_train_samples=run.args.data.max_train_samples,
        started=state.started,
        calibration=calibration,
    )


def _finish(
    run: RecipeRun,
    state: RunState,
    summary: dict[str, Any],
    eval_metrics: dict[str, Any],
    test_metrics: dict[str, Any],
) -> None:
    """Main process: write ``run_summary.json`` (last: it marks the run as finished), drop the checkpoints unless
    they are kept, and print the closing line."""
    if not state.main_process:
        return
    write_json(state.output_dir / SUMMARY_FILE, summary)
    if not run.args.protocol.keep_checkpoints:
        for folder in state.output_dir.glob("checkpoint-*"):
            shutil.rmtree(folder, ignore_errors=True)
    numbers = run.done_numbers(eval_metrics, test_metrics)
    if numbers is not None:
        say(f"done: {numbers} (model of epoch {summary['model_epoch']}) in {summary['wall_seconds']:.0f}s")
    if summary.get("converged") is False:  # the numbers say how fast the loss learns, not where it ends
        say(f"not converged: {summary['convergence']['reason']}; train longer before comparing")
