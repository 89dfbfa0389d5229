"""The tasks a comparison sweep runs: GLUE tasks (``mrpc``, ``sst2``...) through the GLUE recipe, and image tasks
(``vision:<name>``) through the image-classification recipe.

An image task ``vision:<name>`` is the Hub data set ``<name>`` (``vision:cifar10``, ``vision:cifar100``,
``vision:mnist``, ``vision:svhn``; see :data:`hf_squareloss.vision.data.HUB_DATASETS`), or, with ``--data_root``,
the local folders ``<data_root>/<name>/train``, ``validation`` (optional: else a hold-out of train) and ``test``
(optional) of ``<class>/<image>`` files. Its metrics are the test accuracy of the model kept on validation (the TCE
paper's number) and the validation accuracy.
"""

from __future__ import annotations

__all__ = [
    "GLUE_RECIPE",
    "VISION_PREFIX",
    "VISION_RECIPE",
    "canonical_task",
    "is_vision",
    "main_metric",
    "metric_names",
    "recipe_module",
]

GLUE_RECIPE = "hf_squareloss.glue.run"
VISION_RECIPE = "hf_squareloss.vision.run"
VISION_PREFIX = "vision:"
VISION_METRICS = ("test_accuracy", "accuracy")


def is_vision(task: str) -> bool:
    return task.startswith(VISION_PREFIX)


def canonical_task(task: str) -> str:
    """The task's name as the reports spell it; ``ValueError`` for an unknown GLUE task or an empty image task."""
    if is_vision(task):
        name = task[len(VISION_PREFIX) :]
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"image tasks are named vision:<data set or folder name>, got {task!r}")
        return task
    from ..glue.tasks import get_task

    return get_task(task).name


def metric_names(task: str) -> list[str]:
    """The metrics of ``task``: GLUE's (MNLI adds its mismatched accuracy as ``accuracy_mm``); for images the
    test accuracy, then the validation accuracy."""
    if is_vision(task):
        return list(VISION_METRICS)
    from ..glue.tasks import get_task

    t = get_task(task)
    names = list(t.metrics)
    if len(t.eval_splits) > 1:
        names += [f"{m}_mm" for m in t.metrics]
    return names


def main_metric(task: str) -> str:
    if is_vision(task):
        return VISION_METRICS[0]
    from ..glue.tasks import get_task

    return get_task(task).main_metric


def recipe_module(task: str) -> str:
    return VISION_RECIPE if is_vision(task) else GLUE_RECIPE


def history_metric(task: str) -> str:
    """The per-epoch metric of the learning curves (evaluated on validation during training)."""
    return "accuracy" if is_vision(task) else main_metric(task)
