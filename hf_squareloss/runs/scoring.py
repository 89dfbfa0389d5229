"""How a recipe scores its model: the task's own metrics, the calibration of the probabilities the model serves, the
temperature fitted with ``--calibrate``, and the reliability diagram. Every recipe (GLUE, images) uses the same.

``ece``, ``nll`` and ``brier`` are those of :mod:`hf_squareloss.calibration`, on the probabilities the loss serves
(:func:`hf_squareloss.served_log_probs`: the softmax of the logits; for the square loss ``softmax(z / M)``). Once a
temperature is fitted they use it, and the values at ``T = 1`` are kept under ``*_uncalibrated`` names.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["CALIBRATION_NAMES", "ServedMetrics", "calibrate", "logits_of"]

CALIBRATION_NAMES = ("ece", "nll", "brier")


def logits_of(prediction: Any) -> Any:
    """The logits of a ``transformers`` ``EvalPrediction`` or ``PredictionOutput`` (the first output of a tuple)."""
    return prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions


class ServedMetrics:
    """``compute_metrics`` of a recipe: ``task_metrics(logits, labels)`` and the calibration of the served
    probabilities.

    ``loss`` (the trained loss's config) is set once the Trainer exists; before, only the task's metrics are
    computed. While ``temperature`` is set the calibration metrics use it, and the ones at ``T = 1`` are added under
    ``*_uncalibrated`` names.
    """

    def __init__(self, task_metrics: Callable[[np.ndarray, np.ndarray], dict[str, float]]) -> None:
        self.task_metrics = task_metrics
        self.loss: Any = None
        self.temperature: float | None = None
        self.last: tuple[Any, Any] | None = None
        """Logits and labels of the latest evaluation."""

    def __call__(self, prediction: Any) -> dict[str, float]:
        from ..calibration import served_calibration_metrics

        logits, labels = logits_of(prediction), np.asarray(prediction.label_ids)
        self.last = (logits, labels)
        out = dict(self.task_metrics(np.asarray(logits), labels))
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

        if self.last is None:
            raise ValueError("no evaluation to draw: the reliability diagram follows an evaluation")
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


def calibrate(trainer: Any, dataset: Any, metrics: ServedMetrics) -> dict[str, Any]:
    """Fit the temperature on ``dataset`` (every process gets the same gathered logits, hence the same value),
    store it in the model's loss record, and return what the run summary records about it."""
    from ..calibration import fit_temperature_for
    from ..scores import set_temperature

    metrics.temperature = None
    prediction = trainer.predict(dataset, metric_key_prefix="calibration")
    fit = fit_temperature_for(logits_of(prediction), prediction.label_ids, trainer.loss_function.config)
    set_temperature(trainer.accelerator.unwrap_model(trainer.model), fit.temperature)
    metrics.temperature = fit.temperature
    return {**fit.to_dict(), "fitted_on": "validation"}
