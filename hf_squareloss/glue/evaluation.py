"""How the GLUE recipe scores a model: the task's GLUE metrics, the calibration of the served probabilities, the
temperature fitted with ``--calibrate``, and the reliability diagram."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .tasks import GlueTask

__all__ = ["EvalMetrics", "calibrate"]

CALIBRATION_NAMES = ("ece", "nll", "brier")


def _logits(prediction: Any) -> Any:
    return prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions


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

        logits = _logits(prediction)
        labels = prediction.label_ids
        self.last = (logits, labels)
        out = self.metric.compute(predictions=np.argmax(logits, axis=-1), references=labels)
        if self.loss is None:
            return out
        served = served_calibration_metrics(logits, labels, self.loss, temperature=self.temperature or 1.0)
        out.update({name: served[name] for name in CALIBRATION_NAMES})
        if self.temperature is not None:
            before = served_calibration_metrics(logits, labels, self.loss, temperature=1.0)
            out.update({f"{name}_uncalibrated": before[name] for name in CALIBRATION_NAMES})
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


def calibrate(trainer: Any, dataset: Any, metrics: EvalMetrics) -> dict[str, Any]:
    """Fit the temperature on ``dataset`` (every process gets the same gathered logits, hence the same value),
    store it in the model's loss record, and return what the run summary records about it."""
    from ..calibration import fit_temperature_for
    from ..scores import set_temperature

    metrics.temperature = None
    prediction = trainer.predict(dataset, metric_key_prefix="calibration")
    fit = fit_temperature_for(_logits(prediction), prediction.label_ids, trainer.loss_function.config)
    set_temperature(trainer.accelerator.unwrap_model(trainer.model), fit.temperature)
    metrics.temperature = fit.temperature
    return {**fit.to_dict(), "fitted_on": "validation"}
