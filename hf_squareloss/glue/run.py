"""Fine-tune a model on a GLUE task with the loss of your choice: the recipe behind ``recipes/glue/run_glue.py``.

Follows the conventions of the ``transformers`` text-classification example (``HfArgumentParser`` over model,
data and training arguments; ``all_results.json`` / ``eval_results.json`` and the model in ``--output_dir``), and
adds the loss (``--loss_type``, ``--square_k``, ``--square_m``, ``--tce_alpha``), label noise on the training
split (``--label_noise``) and the papers' protocols (``--protocol``). Run ``python -m hf_squareloss.glue.run -h``.

A run resumes from the last checkpoint in ``--output_dir`` when it was interrupted, refuses to resume with other
settings, and never overwrites a finished run (see :mod:`hf_squareloss.glue.outputs` for the folder's files).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..recipe_run import configure_logging, run_once
from ..scores import temperature_of
from ..training_args import SquareLossTrainingArguments
from .arguments import DataTrainingArguments, LabelNoiseArguments, ModelArguments, ProtocolArguments
from .callbacks import PROGRESS_PREFIX, EpochProgressCallback
from .outputs import (
    DATASET_FILE,
    LABEL_NOISE_FILE,
    RELIABILITY_FILE,
    RUN_ARGS_FILE,
    SUMMARY_FILE,
    eval_history,
    last_complete_checkpoint,
    write_json,
)
from .preprocess import prepare_data, tokenize
from .protocol import ProtocolSetup, configure_protocol
from .records import check_resumable, run_args_record, run_summary
from .tasks import GlueTask, get_task

__all__ = ["ARGUMENT_CLASSES", "STSB_REFUSAL", "EvalMetrics", "main", "parse_args", "run"]

logger = logging.getLogger(__name__)

ARGUMENT_CLASSES = (
    ModelArguments,
    DataTrainingArguments,
    LabelNoiseArguments,
    ProtocolArguments,
    SquareLossTrainingArguments,
)

STSB_REFUSAL = (
    "stsb is a regression task (a similarity score in [0, 5]) and the losses of this package are classification "
    "losses, so the recipe does not train it. Its metrics (Pearson and Spearman) are in "
    "hf_squareloss.glue.metrics; train it with the upstream transformers example (MSE loss)."
)


def parse_args(
    argv: Sequence[str] | None = None,
) -> tuple[
    ModelArguments, DataTrainingArguments, LabelNoiseArguments, ProtocolArguments, SquareLossTrainingArguments
]:
    """Parse the command line (or a single ``.json`` file of arguments, as in the ``transformers`` examples)."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(ARGUMENT_CLASSES)
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)


class EvalMetrics:
    """``compute_metrics`` of the recipe: the task's GLUE metrics and the calibration of the served probabilities
    (``ece``, ``nll``, ``brier``; see :mod:`hf_squareloss.calibration`).

    ``loss`` (the trained loss) is set once the Trainer exists; while ``temperature`` is set the calibration metrics
    use it and the ones at ``T = 1`` are added under ``*_uncalibrated`` names.
    """

    def __init__(self, task: GlueTask) -> None:
        from .metrics import Glue

        self.metric = Glue(config_name=task.name, keep_in_memory=True)
        self.loss: Any = None
        self.temperature: float | None = None
        self.last: tuple[Any, Any] | None = None
        """Logits and labels of the latest evaluation."""

    def __call__(self, prediction: Any) -> dict[str, float]:
        from ..calibration import served_calibration_metrics

        logits = (
            prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        )
        labels = prediction.label_ids
        self.last = (logits, labels)
        out = self.metric.compute(predictions=np.argmax(logits, axis=-1), references=labels)
        if self.loss is None:
            return out
        names = ("ece", "nll", "brier")
        served = served_calibration_metrics(logits, labels, self.loss, temperature=self.temperature or 1.0)
        out.update({name: served[name] for name in names})
        if self.temperature is not None:
            before = served_calibration_metrics(logits, labels, self.loss, temperature=1.0)
            out.update({f"{name}_uncalibrated": before[name] for name in names})
        return out

    def write_reliability_diagram(self, path: Path, title: str) -> None:
        """Reliability diagram of the latest evaluation: the served probabilities, and beside them those at
        ``T = 1`` when a temperature is set."""
        from ..calibration import reliability_figure
        from ..scores import served_log_probs

        logits, labels = self.last
        logits = torch.as_tensor(np.asarray(logits)).double()
        before = served_log_probs(logits, self.loss, temperature=1.0).exp()
        if self.temperature is None:
            panels = [(before, labels, title)]
        else:
            after = served_log_probs(logits, self.loss, temperature=self.temperature).exp()
            panels = [
                (before, labels, f"{title}, uncalibrated (T = 1)"),
                (after, labels, f"{title}, T = {self.temperature:.4g}"),
            ]
        reliability_figure(panels, path)


def _calibrate(trainer: Any, dataset: Any, metrics: EvalMetrics) -> dict[str, Any]:
    """Fit the temperature on ``dataset`` (every process gets the same gathered logits, hence the same value),
    store it in the model's loss record, and return what the run summary records about it."""
    from ..calibration import fit_temperature_for
    from ..scores import set_temperature

    metrics.temperature = None
    prediction = trainer.predict(dataset, metric_key_prefix="calibration")
    logits = (
        prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    )
    fit = fit_temperature_for(logits, prediction.label_ids, trainer.loss_function.config)
    set_temperature(trainer.accelerator.unwrap_model(trainer.model), fit.temperature)
    metrics.temperature = fit.temperature
    return {**fit.to_dict(), "fitted_on": "validation"}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the recipe with ``argv`` (default: ``sys.argv[1:]``); return the run's summary.

    With ``--push_to_hub``, a failed push leaves ``push_error`` in the returned summary (the command then exits
    with status 1); the run's folder is complete and can be pushed later with ``hf-squareloss push``.
    """
    model_args, data_args, noise_args, protocol_args, training_args = parse_args(argv)
    return run(model_args, data_args, noise_args, protocol_args, training_args, argv=argv)


def run(
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    noise_args: LabelNoiseArguments,
    protocol_args: ProtocolArguments,
    training_args: SquareLossTrainingArguments,
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The recipe on parsed arguments (see the module docstring)."""
    configure_logging(training_args, logger)

    task = get_task(data_args.task_name)
    if task.is_regression:
        raise ValueError(STSB_REFUSAL)
    if not (training_args.do_train or training_args.do_eval):
        raise ValueError("nothing to do: pass --do_train and/or --do_eval")
    if protocol_args.calibrate and not training_args.do_eval:
        raise ValueError(
            "--calibrate fits the temperature on the validation set and evaluates with it: add --do_eval"
        )
    setup = configure_protocol(protocol_args, training_args, task, data_args, noise_args)
    training_args = setup.training_args
    from .card import write_run_card

    return run_once(
        training_args,
        lambda: _run_locked(
            model_args, data_args, noise_args, protocol_args, training_args, setup, task, argv
        ),
        write_run_card,
    )


def _run_locked(
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    noise_args: LabelNoiseArguments,
    protocol_args: ProtocolArguments,
    training_args: SquareLossTrainingArguments,
    setup: ProtocolSetup,
    task: GlueTask,
    argv: Sequence[str] | None,
) -> dict[str, Any]:
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        default_data_collator,
        set_seed,
    )

    from ..trainer import SquareLossTrainer

    started = time.perf_counter()
    output_dir = Path(training_args.output_dir)
    main_process = training_args.process_index == 0
    run_args = run_args_record(
        argv, model_args, data_args, noise_args, protocol_args, training_args, setup.record
    )

    last_checkpoint = None
    if output_dir.is_dir():
        check_resumable(output_dir, run_args)
        if training_args.do_train and training_args.resume_from_checkpoint is None:
            found = last_complete_checkpoint(output_dir, remove_incomplete=main_process)
            last_checkpoint = str(found) if found is not None else None
    if last_checkpoint is not None and main_process:
        print(f"{PROGRESS_PREFIX} resuming the interrupted run from {last_checkpoint}", flush=True)
    if main_process:
        write_json(output_dir / RUN_ARGS_FILE, run_args)

    set_seed(training_args.seed)

    # ---- data ---------------------------------------------------------------------------------------------
    raw, noise_record, dataset_record = prepare_data(
        task,
        data_args,
        noise_args,
        do_train=training_args.do_train,
        do_eval=training_args.do_eval,
        cache_dir=model_args.cache_dir,
    )
    if main_process:
        write_json(output_dir / DATASET_FILE, dataset_record)
        if noise_record is not None:
            write_json(output_dir / LABEL_NOISE_FILE, noise_record)

    # ---- model --------------------------------------------------------------------------------------------
    hub = {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision}
    config = AutoConfig.from_pretrained(
        model_args.config_name or model_args.model_name_or_path,
        num_labels=task.num_labels,
        id2label=task.id2label,
        label2id=task.label2id,
        **hub,
    )
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.tokenizer_name or model_args.model_name_or_path, **hub
    )
    model = AutoModelForSequenceClassification.from_pretrained(
        model_args.model_name_or_path,
        config=config,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        **hub,
    )
    with training_args.main_process_first(desc="tokenization"):
        encoded = {
            split: tokenize(ds, task, tokenizer, data_args, f"tokenizing {split}")
            for split, ds in raw.items()
        }
    if data_args.pad_to_max_length:
        collator = default_data_collator
    else:
        multiple = 8 if (training_args.fp16 or training_args.bf16) else None
        collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)

    metric = setup.record.get("metric_for_best_model") or task.main_metric
    progress = EpochProgressCallback(metric, bool(setup.record.get("greater_is_better", True)))
    eval_main = encoded.get(task.eval_splits[0])
    compute_metrics = EvalMetrics(task)
    trainer = SquareLossTrainer(
        model=model,
        args=training_args,
        train_dataset=encoded.get("train"),
        eval_dataset=eval_main,
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=compute_metrics,
        callbacks=[*setup.callbacks, progress],
    )
    compute_metrics.loss = trainer.loss_function.config
    loss_description = trainer.loss_function.config.describe()
    if main_process:
        print(
            f"{PROGRESS_PREFIX} {task.name} | {loss_description} | protocol {setup.record['name']} | "
            f"label noise {noise_args.label_noise:g} | seed {training_args.seed} | {output_dir}",
            flush=True,
        )

    # ---- train --------------------------------------------------------------------------------------------
    history: list[dict[str, Any]] = []
    train_metrics: dict[str, Any] = {}
    if training_args.do_train:
        checkpoint = training_args.resume_from_checkpoint or last_checkpoint
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()  # model, tokenizer and config (with the loss record)
        train_metrics = dict(train_result.metrics)
        train_metrics["train_samples"] = len(encoded["train"])
        trainer.log_metrics("train", train_metrics)
        trainer.save_metrics("train", train_metrics)
        trainer.save_state()
        history = eval_history(trainer.state.log_history)
    trainer.remove_callback(progress)

    # ---- calibrate: one temperature fitted on the validation set, saved with the model -----------------------
    calibration: dict[str, Any] | None = None
    if protocol_args.calibrate:
        calibration = _calibrate(trainer, eval_main, compute_metrics)
        trainer.save_model()  # the saved config now carries the temperature
        if main_process:
            print(
                f"{PROGRESS_PREFIX} temperature {calibration['temperature']:.4g} ({calibration['status']}) fitted on "
                f"{task.eval_splits[0]}: NLL {calibration['nll_at_one']:.4f} -> {calibration['nll']:.4f}",
                flush=True,
            )
    else:
        compute_metrics.temperature = temperature_of(trainer.model)  # a model calibrated before keeps its own

    # ---- evaluate -----------------------------------------------------------------------------------------
    eval_metrics: dict[str, Any] = {}
    if training_args.do_eval:
        for i, split in enumerate(task.eval_splits):
            metrics = trainer.evaluate(eval_dataset=encoded[split])
            metrics["eval_samples"] = len(encoded[split])
            suffix = "" if i == 0 else "_mm"  # MNLI mismatched, named as in the transformers example
            eval_metrics.update({f"{k}{suffix}": v for k, v in metrics.items()})
            if i == 0 and main_process and compute_metrics.last is not None:
                compute_metrics.write_reliability_diagram(
                    output_dir / RELIABILITY_FILE, f"{task.name} {split}"
                )
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)

    # ---- summary (written last: it marks the run as finished) -----------------------------------------------
    summary = run_summary(
        task,
        trainer,
        training_args,
        setup.record,
        noise_record,
        dataset_record,
        history,
        train_metrics,
        eval_metrics,
        model_args,
        data_args,
        started,
        calibration=calibration,
    )
    if main_process:
        write_json(output_dir / SUMMARY_FILE, summary)
        if not protocol_args.keep_checkpoints:
            for folder in output_dir.glob("checkpoint-*"):
                shutil.rmtree(folder, ignore_errors=True)
        main_key = f"eval_{task.main_metric}"
        if main_key in eval_metrics:
            print(
                f"{PROGRESS_PREFIX} done: {main_key}={eval_metrics[main_key]:.4f} (model of epoch "
                f"{summary['model_epoch']}) in {summary['wall_seconds']:.0f}s",
                flush=True,
            )
    return summary


if __name__ == "__main__":
    sys.exit(1 if "push_error" in main() else 0)
