"""Train an image classifier with the loss of your choice: the recipe behind
``recipes/vision/run_image_classification.py``.

Follows the conventions of the ``transformers`` image-classification example (``HfArgumentParser`` over model, data
and training arguments; ``all_results.json`` and the model in ``--output_dir``). The label noise, the protocols, the
steps of a run and its folder are every recipe's (:mod:`hf_squareloss.runs`): ``run_args.json``, ``dataset.json``,
``label_noise.json``, ``*_results.json``, ``run_summary.json`` (written last). ``--do_eval`` scores the validation
split (``eval_*``), ``--do_predict`` the test split (``test_*``) with the model the protocol kept: accuracy, and
the calibration of the served probabilities (``--calibrate`` fits a temperature on the validation split first). An interrupted run
resumes from its last checkpoint; a finished run is never overwritten. Run ``python -m hf_squareloss.vision.run -h``.
This module holds what is the image recipe's: the images and their transforms, the model, the TCE paper's protocol.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..runs.arguments import LabelNoiseArguments, explicit_flags, parse_recipe_args
from ..runs.protocol import ProtocolSetup
from ..runs.records import resume_keys
from ..runs.skeleton import Prepared, RecipeRun, RunArgs, RunState, run_command, run_recipe
from ..training_args import SquareLossTrainingArguments
from .arguments import ImageDataArguments, ImageModelArguments, ImageProtocolArguments

__all__ = ["ARGUMENT_CLASSES", "ImageRun", "main", "parse_args", "run"]

logger = logging.getLogger(__name__)

ARGUMENT_CLASSES = (
    ImageModelArguments,
    ImageDataArguments,
    LabelNoiseArguments,
    ImageProtocolArguments,
    SquareLossTrainingArguments,
)

RESUME_KEYS = resume_keys(
    model=("model_name_or_path", "model_type", "num_channels", "config_name", "model_revision"),
    data=(
        "task_name",
        "dataset_name",
        "dataset_config_name",
        "train_dir",
        "validation_dir",
        "validation_size",
        "validation_split_seed",
        "max_train_samples",
        "image_size",
        "augmentation",
        "shift_pixels",
        "image_mean",
        "image_std",
    ),
    protocol=("lr_milestones", "lr_decay"),
    training=("optim_args",),
)
"""The settings a resumed image run must share with the interrupted one."""


def parse_args(argv: Sequence[str] | None = None) -> tuple[Any, ...]:
    """Parse the command line (or a single ``.json`` file of arguments, as in the ``transformers`` examples)."""
    return parse_recipe_args(ARGUMENT_CLASSES, argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the recipe with ``argv`` (default: ``sys.argv[1:]``); return the run's summary."""
    return run_command(ImageRun, argv)


def run(
    model_args: ImageModelArguments,
    data_args: ImageDataArguments,
    noise_args: LabelNoiseArguments,
    protocol_args: ImageProtocolArguments,
    training_args: SquareLossTrainingArguments,
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The recipe on parsed arguments (see the module docstring)."""
    return run_recipe(
        ImageRun(RunArgs(model_args, data_args, noise_args, protocol_args, training_args, argv))
    )


class ImageRun(RecipeRun):
    """A run of the image recipe: the hooks of :class:`~hf_squareloss.runs.skeleton.RecipeRun`."""

    argument_classes = ARGUMENT_CLASSES
    resume_keys = RESUME_KEYS
    logger = logger

    def __init__(self, args: RunArgs) -> None:
        super().__init__(args)
        self.image_record: dict[str, Any] = {}
        """How the images were prepared (``dataset.json`` and the summary keep it under ``images``)."""

    @property
    def main_metric(self) -> str:
        return "accuracy"

    @property
    def model_name(self) -> str | None:
        return self.args.model.name

    def check(self) -> None:
        training = self.args.training
        if not (training.do_train or training.do_eval or training.do_predict):
            raise ValueError("nothing to do: pass --do_train, --do_eval and/or --do_predict")
        if not training.do_train and self.args.model.model_type is not None:
            raise ValueError(
                "--model_type builds an untrained model; evaluate a trained one with --model_name_or_path"
            )

    def configure(self) -> ProtocolSetup:
        from .protocol import configure_image_protocol

        args = self.args
        setup = configure_image_protocol(
            args.protocol, args.training, args.data, args.noise, explicit_flags(args.argv)
        )
        setup.training_args.remove_unused_columns = False  # the images are transformed on the fly
        return setup

    def write_card(self, run_dir: Path) -> Path:
        from .card import write_image_run_card

        return write_image_run_card(run_dir)

    def prepare(self, state: RunState) -> Prepared:
        """The splits (subsets, label noise on train), the model, the images' transforms, and the trainer with the
        protocol's learning-rate milestones."""
        from .model import build_model, image_processor_settings
        from .prepare import ImageTask, add_training_noise, image_dataset_record, load_splits, set_transforms

        args, training = self.args, self.args.training
        splits, source = load_splits(args.data, training, args.model.cache_dir)
        label_names = list(splits["train"].features["label"].names)
        task = ImageTask(str(args.data.task_name), tuple(label_names))
        noise_record = None
        if training.do_train and args.noise.active:
            noise_record = add_training_noise(splits, args.noise, task.num_labels)
        processor = image_processor_settings(args.model)
        first_image = splits["train"][0]["image"]
        model, channels = build_model(args.model, label_names, first_image)
        self.image_record = set_transforms(
            splits, args.data, args.protocol.protocol, processor, channels, first_image
        )
        if state.main_process:
            self._save_image_processor(state.output_dir)
        trainer = self._trainer(model, splits, state)
        return Prepared(
            task=task,
            trainer=trainer,
            train_dataset=splits["train"] if training.do_train else None,
            eval_dataset=splits["validation"],
            test_dataset=splits.get("test"),
            dataset_record=image_dataset_record(task, source, splits, noise_record, self.image_record),
            noise_record=noise_record,
            header=self._header(task.name, trainer, splits, state),
        )

    def _save_image_processor(self, output_dir: Path) -> None:
        """Beside a 3-channel model, the image processor that serves it as it was evaluated."""
        from .model import PIPELINE_PROCESSOR_NOTE, save_image_processor

        images = self.image_record
        if images["channels"] == 3:
            size = tuple(images["size"]) if images["size"] else None
            save_image_processor(output_dir, images["mean"], images["std"], size)
        else:
            logger.info("no image processor saved: %s", PIPELINE_PROCESSOR_NOTE)

    def _trainer(self, model: Any, splits: dict[str, Any], state: RunState) -> Any:
        from transformers import default_data_collator

        from ..runs.scoring import ServedMetrics
        from .trainer import ImageTrainer

        training = self.args.training
        schedule = state.setup.record.get("lr_schedule") or {}
        self.metrics = metrics = ServedMetrics(_accuracy)
        trainer = ImageTrainer(
            model=model,
            args=training,
            train_dataset=splits["train"] if training.do_train else None,
            eval_dataset=splits["validation"],
            data_collator=default_data_collator,
            compute_metrics=metrics,
            callbacks=state.callbacks,
            lr_milestones=schedule.get("milestones"),
            lr_decay=schedule.get("decay", 0.1),
        )
        metrics.loss = trainer.loss_function.config
        return trainer

    def _header(self, task: str, trainer: Any, splits: dict[str, Any], state: RunState) -> str:
        args = self.args
        size = tuple(self.image_record["size"]) if self.image_record["size"] else None
        test_count = f" / {len(splits['test'])} test" if "test" in splits else ""
        return (
            f"{task} | {args.model.name} | {trainer.loss_function.config.describe()} | "
            f"protocol {state.setup.record['name']} | label noise {args.noise.label_noise:g} | seed "
            f"{args.training.seed} | {len(splits['train'])} train / {len(splits['validation'])} validation"
            f"{test_count} images of {size} | {state.output_dir}"
        )

    def summary_extras(self, prepared: Prepared, test_metrics: dict[str, Any]) -> dict[str, Any]:
        """The test split's metrics and how the images were prepared."""
        return {
            "test_metrics": {
                k: v for k, v in test_metrics.items() if not k.endswith(("_runtime", "_per_second"))
            },
            "images": self.image_record,
        }

    def done_numbers(self, eval_metrics: dict[str, Any], test_metrics: dict[str, Any]) -> str | None:
        return " ".join(
            f"{k}={v:.4f}" for k, v in {**eval_metrics, **test_metrics}.items() if k.endswith("_accuracy")
        )


def _accuracy(logits: Any, labels: Any) -> dict[str, float]:
    """The task's metric: the accuracy of the argmax of the logits."""
    import numpy as np

    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


if __name__ == "__main__":
    sys.exit(1 if "push_error" in main() else 0)
