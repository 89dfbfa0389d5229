"""The image tasks as a task family: what the sweep, its reports and ``hf-squareloss card`` ask about them.

An image task ``vision:<name>`` is the Hub data set ``<name>`` (``vision:cifar10``, ``vision:cifar100``,
``vision:mnist``, ``vision:svhn``; see :data:`hf_squareloss.vision.data.HUB_DATASETS`), or, with the sweep's
``--data_root``, the local folders ``<data_root>/<name>/train``, ``validation`` (optional: else a hold-out of train)
and ``test`` (optional) of ``<class>/<image>`` files. Its metrics are the test accuracy of the model kept on
validation (the TCE paper's number) and the validation accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..model_card import ModelCardInfo
from ..runs.families import SHARED_SWEEP_PROTOCOLS, CardMetadata, SweepArgv, TaskFamily
from .arguments import TASK_PREFIX

__all__ = ["FAMILY", "VisionFamily"]

METRICS = ("test_accuracy", "accuracy")


class VisionFamily(TaskFamily):
    """Image classification (``vision:<name>``), run by :mod:`hf_squareloss.vision.run`."""

    name = "vision"
    recipe_module = "hf_squareloss.vision.run"
    run_kind = "image_run"
    description = f"image tasks ({TASK_PREFIX}<name>)"
    sweep_protocols = (*SHARED_SWEEP_PROTOCOLS, "tce_paper")
    sweep_flags = (
        "--model_type",
        "--dataset_name",
        "--train_dir",
        "--validation_dir",
        "--test_dir",
        "--do_predict",
        "--max_predict_samples",
    )

    def canonical_task(self, task: str) -> str:
        name = task.removeprefix(TASK_PREFIX)
        if not task.startswith(TASK_PREFIX) or not name or "/" in name or name.startswith("."):
            raise ValueError(f"image tasks are named {TASK_PREFIX}<data set or folder name>, got {task!r}")
        return task

    def metric_names(self, task: str) -> list[str]:
        """The test accuracy of the model kept on validation, then the validation accuracy."""
        return list(METRICS)

    def main_metric(self, task: str) -> str:
        return METRICS[0]

    def history_metric(self, task: str) -> str:
        return "accuracy"

    def sweep_argv(self, task: str, model_name_or_path: str, data_root: str | None) -> SweepArgv:
        """A CIFAR ResNet by its architecture name (``resnet20``) or a pretrained model; the Hub data set named by
        the task, or the task's image folders under ``data_root`` (validation and test when present)."""
        from .resnet import ARCHITECTURES

        name = task.removeprefix(TASK_PREFIX)
        model = "--model_type" if model_name_or_path in ARCHITECTURES else "--model_name_or_path"
        argv = [model, model_name_or_path, "--task_name", task]
        if data_root is None:
            return SweepArgv(head=[*argv, "--dataset_name", name, "--do_predict"], data=[])
        folder = Path(data_root) / name
        argv += ["--dataset_name", "imagefolder", "--train_dir", str(folder / "train")]
        for split in ("validation", "test"):
            if (folder / split).is_dir():
                argv += [f"--{split}_dir", str(folder / split)]
        return SweepArgv(head=argv + (["--do_predict"] if (folder / "test").is_dir() else []), data=[])

    def setup_line(
        self, task: str, row: Mapping[str, Any], run_args: Mapping[str, Any], dataset: Mapping[str, Any]
    ) -> str:
        training, resolved = run_args["training"], run_args["protocol"].get("resolved", {})
        images, splits = dataset.get("images", {}), dataset.get("splits_used", {})
        schedule = resolved.get("lr_schedule")
        decay = (
            f", x{schedule['decay']:g} at epochs {', '.join(f'{m:g}' for m in schedule['milestones'])}"
            if schedule
            else ""
        )
        model = (
            run_args["model"].get("model_type") or Path(str(run_args["model"].get("model_name_or_path"))).name
        )
        batch = resolved.get("batch_size", training["per_device_train_batch_size"])
        return (
            f"model `{model}`, {splits.get('train', '?'):,} training / {splits.get('validation', '?'):,} "
            f"validation / {splits.get('test', 0):,} test images of {'x'.join(map(str, images.get('size') or []))} "
            f"pixels ({images.get('channels')} channel(s), augmentation {images.get('augmentation')}, normalised "
            f"with the {images.get('normalisation_from')}'s statistics), protocol {resolved.get('name')}: "
            f"{training['num_train_epochs']:g} epochs, {training['optim']} ({training.get('optim_args') or 'defaults'}), "
            f"learning rate {training['learning_rate']:g}{decay}, batch {batch}, "
            f"weight decay {training['weight_decay']:g}; the model kept is the epoch with the best validation "
            f"{resolved.get('metric_for_best_model')}."
        )

    def report_subject(self, tasks: Sequence[str]) -> str:
        return ", ".join(tasks)

    def card_metadata(self, tasks: Sequence[str]) -> CardMetadata:
        return CardMetadata(
            tags=("image-classification", *(t.replace(":", "-") for t in tasks)),
            pipeline_tag="image-classification",
        )

    def card_info(self, run_dir: str | Path, *, base_model: str | None = None) -> ModelCardInfo:
        from .card import image_card_info

        return image_card_info(run_dir, base_model=base_model)


FAMILY = VisionFamily()
