"""How the GLUE recipe scores a model: the task's GLUE metrics, beside the calibration every recipe reports
(:mod:`hf_squareloss.runs.scoring`)."""

from __future__ import annotations

import numpy as np

from ..runs.scoring import ServedMetrics
from .tasks import GlueTask

__all__ = ["glue_metrics"]


def glue_metrics(task: GlueTask) -> ServedMetrics:
    """``compute_metrics`` of the GLUE recipe: the task's GLUE metrics of the argmax of the logits, and the
    calibration of the served probabilities."""
    from .metrics import Glue

    metric = Glue(config_name=task.name, keep_in_memory=True)

    def task_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        return metric.compute(predictions=np.argmax(logits, axis=-1), references=labels)

    return ServedMetrics(task_metrics)
