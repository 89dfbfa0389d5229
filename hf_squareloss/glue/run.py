"""Fine-tune a model on a GLUE task with the loss of your choice: the recipe behind ``recipes/glue/run_glue.py``.

Follows the conventions of the ``transformers`` text-classification example (``HfArgumentParser`` over model,
data and training arguments; ``all_results.json`` / ``eval_results.json`` and the model in ``--output_dir``), and
adds the loss (``--loss_type``, ``--square_k``, ``--square_m``, ``--tce_alpha``), label noise on the training
split (``--label_noise``) and the papers' protocols (``--protocol``). Run ``python -m hf_squareloss.glue.run -h``.

The steps of a run are every recipe's (:mod:`hf_squareloss.runs.skeleton`): a run resumes from the last checkpoint
in ``--output_dir`` when it was interrupted, refuses to resume with other settings, and never overwrites a finished
run (see :mod:`hf_squareloss.runs.folder` for the folder's files). This module holds what is GLUE's: the task, the
tokenized data, the model, the metrics with their calibration, and MNLI's second validation split.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..runs.arguments import LabelNoiseArguments, ProtocolArguments, parse_recipe_args
from ..runs.protocol import ProtocolSetup, SameData, configure_protocol
from ..runs.records import resume_keys
from ..runs.skeleton import Prepared, RecipeRun, RunArgs, RunState, run_command, run_recipe
from ..training_args import SquareLossTrainingArguments
from .arguments import DataTrainingArguments, ModelArguments
from .evaluation import glue_metrics
from .tasks import get_task

__all__ = ["ARGUMENT_CLASSES", "DO_PREDICT_REFUSAL", "STSB_REFUSAL", "GlueRun", "main", "parse_args", "run"]

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

DO_PREDICT_REFUSAL = (
    "--do_predict: the GLUE recipe scores the validation split only (GLUE's test labels are not public, so a test "
    "score comes from the GLUE server). Drop --do_predict; for predictions on unlabelled sentences, load the "
    "saved model and use trainer.predict or a text-classification pipeline (hf_squareloss.pipeline_scores)."
)

RESUME_KEYS = resume_keys(
    model=("model_name_or_path", "config_name", "tokenizer_name", "model_revision"),
    data=(
        "task_name",
        "dataset_name",
        "data_dir",
        "max_seq_length",
        "pad_to_max_length",
        "max_train_samples",
    ),
)
"""The settings a resumed GLUE run must share with the interrupted one."""
SAME_DATA = SameData(
    data_keys=("task_name", "dataset_name", "data_dir", "max_train_samples", "max_seq_length"),
    path_keys=("data_dir",),
)
"""The data settings a ``same_epochs`` reference must share with the run."""


def parse_args(
    argv: Sequence[str] | None = None,
) -> tuple[
    ModelArguments, DataTrainingArguments, LabelNoiseArguments, ProtocolArguments, SquareLossTrainingArguments
]:
    """Parse the command line (or a single ``.json`` file of arguments, as in the ``transformers`` examples)."""
    return parse_recipe_args(ARGUMENT_CLASSES, argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the recipe with ``argv`` (default: ``sys.argv[1:]``); return the run's summary.

    With ``--push_to_hub``, a failed push leaves ``push_error`` in the returned summary (the command then exits
    with status 1); the run's folder is complete and can be pushed later with ``hf-squareloss push``.
    """
    return run_command(GlueRun, argv)


def run(
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    noise_args: LabelNoiseArguments,
    protocol_args: ProtocolArguments,
    training_args: SquareLossTrainingArguments,
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The recipe on parsed arguments (see the module docstring)."""
    return run_recipe(GlueRun(RunArgs(model_args, data_args, noise_args, protocol_args, training_args, argv)))


class GlueRun(RecipeRun):
    """A run of the GLUE recipe: the hooks of :class:`~hf_squareloss.runs.skeleton.RecipeRun`."""

    argument_classes = ARGUMENT_CLASSES
    resume_keys = RESUME_KEYS
    logger = logger

    def __init__(self, args: RunArgs) -> None:
        super().__init__(args)
        self.task = get_task(args.data.task_name)
        self.encoded: dict[str, Any] = {}
        """The tokenized splits."""

    @property
    def main_metric(self) -> str:
        return self.task.main_metric

    def check(self) -> None:
        training = self.args.training
        if self.task.is_regression:
            raise ValueError(STSB_REFUSAL)
        if not (training.do_train or training.do_eval):
            raise ValueError("nothing to do: pass --do_train and/or --do_eval")
        if training.do_predict:
            raise ValueError(DO_PREDICT_REFUSAL)

    def configure(self) -> ProtocolSetup:
        args = self.args
        return configure_protocol(
            args.protocol,
            args.training,
            main_metric=self.task.main_metric,
            data_args=args.data,
            noise_args=args.noise,
            same_data=SAME_DATA,
        )

    def write_card(self, run_dir: Path) -> Path:
        from .card import write_run_card

        return write_run_card(run_dir)

    def prepare(self, state: RunState) -> Prepared:
        """The task's splits (subsets, label noise on train), tokenized; the model and the trainer."""
        from ..trainer import SquareLossTrainer
        from .model import load_model
        from .preprocess import prepare_data, tokenize

        args, training, task = self.args, self.args.training, self.task
        raw, noise_record, dataset_record = prepare_data(
            task,
            args.data,
            args.noise,
            do_train=training.do_train,
            do_eval=training.do_eval,
            cache_dir=args.model.cache_dir,
        )
        model, tokenizer, collator = load_model(args.model, args.data, task, training.fp16 or training.bf16)
        self.metrics = metrics = glue_metrics(task)
        with training.main_process_first(desc="tokenization"):
            self.encoded = {
                split: tokenize(ds, task, tokenizer, args.data, f"tokenizing {split}")
                for split, ds in raw.items()
            }
        trainer = SquareLossTrainer(
            model=model,
            args=training,
            train_dataset=self.encoded.get("train"),
            eval_dataset=self.encoded.get(task.eval_splits[0]),
            processing_class=tokenizer,
            data_collator=collator,
            compute_metrics=metrics,
            callbacks=state.callbacks,
        )
        metrics.loss = trainer.loss_function.config
        header = (
            f"{task.name} | {trainer.loss_function.config.describe()} | protocol {state.setup.record['name']} | "
            f"label noise {args.noise.label_noise:g} | seed {training.seed} | {state.output_dir}"
        )
        return Prepared(
            task=task,
            trainer=trainer,
            train_dataset=self.encoded.get("train"),
            eval_dataset=self.encoded.get(task.eval_splits[0]),
            dataset_record=dataset_record,
            noise_record=noise_record,
            header=header,
        )

    @property
    def validation_split(self) -> str:
        return self.task.eval_splits[0]

    def evaluate(self, prepared: Prepared, state: RunState) -> dict[str, Any]:
        """Every validation split of the task (MNLI's mismatched one under ``*_mm`` names, as in the
        ``transformers`` example), and the reliability diagram of the first."""
        trainer, eval_metrics = prepared.trainer, {}
        for i, split in enumerate(self.task.eval_splits):
            metrics = trainer.evaluate(eval_dataset=self.encoded[split])
            metrics["eval_samples"] = len(self.encoded[split])
            suffix = "" if i == 0 else "_mm"
            eval_metrics.update({f"{k}{suffix}": v for k, v in metrics.items()})
            if i == 0:
                self.write_reliability_diagram(state, self.task.name)
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        return eval_metrics

    def done_numbers(self, eval_metrics: dict[str, Any], test_metrics: dict[str, Any]) -> str | None:
        key = f"eval_{self.task.main_metric}"
        return f"{key}={eval_metrics[key]:.4f}" if key in eval_metrics else None


if __name__ == "__main__":
    sys.exit(1 if "push_error" in main() else 0)
