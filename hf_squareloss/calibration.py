r"""Calibration of the probabilities a classifier serves: ECE, NLL, Brier score, reliability diagram, temperature.

Every metric here is computed on **served probabilities** ``p = softmax(z / T)`` (see
:func:`hf_squareloss.served_log_probs`): ``z`` is the logits for the cross-entropy family and ``logits / M`` for the
square loss, whose outputs are scores, not probabilities; ``T`` is the temperature stored in the loss record
(``config.hf_squareloss["temperature"]``), 1 when the model was not calibrated.

Definitions, for ``N`` items with labels :math:`y_n` and probabilities :math:`p_n` over ``C`` classes:

* **ECE** (expected calibration error; Naeini et al., AAAI 2015; Guo et al., ICML 2017), top-label, ``15``
  equal-width bins of the confidence :math:`\hat p_n = \max_c p_{n,c}`, bin ``b`` holding the confidences in
  :math:`(\frac{b-1}{15}, \frac{b}{15}]`, L1: :math:`\sum_b \frac{|B_b|}{N} |\mathrm{acc}(B_b) - \mathrm{conf}(B_b)|`;
* **NLL**: :math:`-\frac1N \sum_n \log p_{n, y_n}`;
* **Brier score** (Brier, 1950), multi-class: :math:`\frac1N \sum_n \sum_c (p_{n,c} - [c = y_n])^2`, in ``[0, 2]``;
* **reliability diagram**: accuracy against mean confidence in the same bins (:func:`reliability_diagram`).

**Temperature scaling** (Guo et al., ICML 2017) fits one scalar ``T`` on held-out data by minimising the NLL of
``softmax(z / T)`` (:func:`fit_temperature`). It never changes the predicted class.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .scores import _unscaled, _wide, check_temperature, loss_config_of, served_log_probs

__all__ = [
    "ECE_BINS",
    "TEMPERATURE_RANGE",
    "TemperatureFit",
    "calibration_metrics",
    "cross_fitted_metrics",
    "fit_temperature",
    "fit_temperature_for",
    "reliability_bins",
    "reliability_diagram",
    "reliability_figure",
    "served_calibration_metrics",
]

ECE_BINS = 15
TEMPERATURE_RANGE = (1e-3, 1e3)
"""Search interval of the temperature; a fit that reaches an end reports it in :attr:`TemperatureFit.status`."""


def _labels_and_rows(values: Any, labels: Any, name: str, ignore_index: int = -100) -> tuple[Tensor, Tensor]:
    """``values`` as a float64 ``[N, C]`` tensor (leading dims flattened) and ``labels`` as ``[N]`` int64, with the
    items labelled ``ignore_index`` dropped; ``ValueError`` on shapes, out-of-range labels, NaN/Inf or no items."""
    values = torch.as_tensor(np.asarray(values) if not isinstance(values, Tensor) else values)
    labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, Tensor) else labels)
    if values.dim() < 2 or tuple(labels.shape) != tuple(values.shape[:-1]):
        raise ValueError(
            f"{name}: need {name} of shape [..., C] and labels of shape [...], got {tuple(values.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if not values.is_floating_point():
        raise ValueError(f"{name}: {name} must be floating point, got {values.dtype}")
    if labels.is_floating_point() and not bool((labels == labels.round()).all()):
        raise ValueError(f"{name}: labels must be integers")
    num_classes = values.shape[-1]
    if num_classes < 2:
        raise ValueError(f"{name}: need at least 2 classes, got {num_classes}")
    values = _wide(values).reshape(-1, num_classes).double()
    labels = labels.reshape(-1).long()
    keep = labels != ignore_index
    values, labels = values[keep], labels[keep]
    if labels.numel() == 0:
        raise ValueError(
            f"{name}: no labelled items (all are ignore_index={ignore_index} or the input is empty)"
        )
    if bool(((labels < 0) | (labels >= num_classes)).any()):
        bad = labels[(labels < 0) | (labels >= num_classes)][:5].tolist()
        raise ValueError(f"{name}: labels must be in [0, {num_classes}) (or {ignore_index}), got {bad}")
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name}: {name} contain NaN or Inf")
    return values, labels


# ---- metrics -------------------------------------------------------------------------------------------------
def reliability_bins(confidences: Any, correct: Any, n_bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Equal-width bins of ``confidences`` in ``[0, 1]``: bin ``b`` holds :math:`(\\frac{b}{n}, \\frac{b+1}{n}]`
    (the first also holds 0).

    Returns numpy arrays: ``edges`` (``n_bins + 1``), ``count``, ``confidence`` (mean confidence of the bin) and
    ``accuracy`` (fraction of ``correct``), the last two ``nan`` for empty bins.
    """
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    conf = torch.as_tensor(np.asarray(confidences, dtype=np.float64)).reshape(-1)
    hits = torch.as_tensor(np.asarray(correct, dtype=np.float64)).reshape(-1)
    if conf.shape != hits.shape:
        raise ValueError(f"confidences and correct differ in length: {conf.numel()} and {hits.numel()}")
    if not bool(((conf >= 0) & (conf <= 1)).all()):
        raise ValueError("confidences must lie in [0, 1]")
    edges = torch.linspace(0.0, 1.0, int(n_bins) + 1, dtype=torch.float64)
    index = torch.bucketize(conf, edges[1:-1], right=False)  # edges[b-1] < c <= edges[b]
    count = torch.bincount(index, minlength=n_bins).double()
    conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, conf)
    hit_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, hits)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "edges": edges.numpy(),
            "count": count.numpy().astype(np.int64),
            "confidence": (conf_sum / count).numpy(),
            "accuracy": (hit_sum / count).numpy(),
        }


def calibration_metrics(
    probabilities: Any, labels: Any, *, n_bins: int = ECE_BINS, ignore_index: int = -100
) -> dict[str, float]:
    """``ece``, ``nll``, ``brier`` and ``accuracy`` of class ``probabilities`` ``[..., C]`` (rows summing to 1).

    Items labelled ``ignore_index`` are left out. The NLL of a probability below the smallest normal float64 is
    that of the smallest normal float64 (about 708 nats); compute probabilities in float64 to stay clear of it.
    """
    probs, labels = _labels_and_rows(probabilities, labels, "probabilities", ignore_index)
    if bool((probs < 0).any()) or not torch.allclose(probs.sum(-1), torch.ones(()).double(), atol=1e-4):
        raise ValueError("probabilities must be >= 0 with rows summing to 1 (apply a softmax first)")
    confidence, predicted = probs.max(-1)
    correct = (predicted == labels).double()
    bins = reliability_bins(confidence.clamp(0.0, 1.0), correct, n_bins)
    filled = bins["count"] > 0
    weights = bins["count"][filled] / labels.numel()
    ece = float(np.sum(weights * np.abs(bins["accuracy"][filled] - bins["confidence"][filled])))
    true_prob = probs.gather(-1, labels[:, None]).squeeze(-1)
    nll = float(-torch.log(true_prob.clamp_min(torch.finfo(torch.float64).tiny)).mean())
    onehot = torch.nn.functional.one_hot(labels, probs.shape[-1]).double()
    brier = float(((probs - onehot) ** 2).sum(-1).mean())
    return {"ece": ece, "nll": nll, "brier": brier, "accuracy": float(correct.mean())}


def served_calibration_metrics(
    logits: Any, labels: Any, loss: Any, *, temperature: float | None = None, n_bins: int = ECE_BINS
) -> dict[str, float]:
    """:func:`calibration_metrics` of the probabilities a model trained with ``loss`` serves from ``logits``
    (:func:`hf_squareloss.served_log_probs`; ``temperature`` overrides the one in the loss record). The NLL is
    read from the log-probabilities, so it stays exact where a probability would underflow."""
    values, labels = _labels_and_rows(logits, labels, "logits")
    log_probs = served_log_probs(values, loss, temperature=temperature)
    out = calibration_metrics(log_probs.exp(), labels, n_bins=n_bins)
    out["nll"] = float(-log_probs.gather(-1, labels[:, None]).mean())
    return out


# ---- temperature scaling ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TemperatureFit:
    """The result of :func:`fit_temperature`."""

    temperature: float
    status: str
    """``"fitted"`` (interior minimum); ``"separable"`` (the NLL still falls at the lower end of the range, as when
    every item is predicted right with a margin: that end is returned); ``"inverted"`` (the true class scores below the
    model's average, the NLL keeps falling as ``T`` grows: the upper end); ``"constant"`` (every row of ``z`` is
    constant, the NLL does not depend on ``T``: 1 is returned)."""
    nll: float
    """Mean NLL at ``temperature``."""
    nll_at_one: float
    """Mean NLL at ``T = 1``, for comparison."""
    num_items: int
    iterations: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _nll_terms(beta: float, z: Tensor, true: Tensor) -> tuple[float, float, float]:
    """Mean NLL of ``softmax(beta z)`` and its first two derivatives in ``beta``."""
    scaled = beta * z
    log_norm = torch.logsumexp(scaled, dim=-1)
    p = torch.exp(scaled - log_norm[:, None])
    mean_z = (p * z).sum(-1)
    var_z = (p * (z - mean_z[:, None]) ** 2).sum(-1)
    nll = float((log_norm - beta * true).mean())
    return nll, float((mean_z - true).mean()), float(var_z.mean())


def fit_temperature(
    z: Any,
    labels: Any,
    *,
    bounds: tuple[float, float] = TEMPERATURE_RANGE,
    ignore_index: int = -100,
    max_iterations: int = 100,
) -> TemperatureFit:
    r"""The temperature ``T`` minimising the mean NLL of ``softmax(z / T)`` for ``labels``.

    In :math:`\beta = 1/T` the mean NLL :math:`\frac1N\sum_n \log\sum_c e^{\beta z_{n,c}} - \beta z_{n,y_n}` is
    convex, with derivative :math:`\frac1N\sum_n \mathbb{E}_{p_\beta}[z_n] - z_{n,y_n}` and second derivative the
    mean variance of ``z`` under :math:`p_\beta`. The root of the derivative is found by Newton's method kept inside
    a shrinking bracket (a step that leaves the bracket is replaced by bisection in :math:`\log\beta`), to machine
    precision. Degenerate data get a clear answer (see :attr:`TemperatureFit.status`).

    Args:
        z: ``[..., C]`` what the temperature divides: logits (cross-entropy family) or ``logits / M`` (square loss);
            use :func:`fit_temperature_for` to start from a model's logits.
        labels: ``[...]`` class indices; ``ignore_index`` items are left out.
        bounds: ``(T_min, T_max)``, the search interval.
    """
    low_t, high_t = (check_temperature(b) for b in bounds)
    if not low_t < high_t:
        raise ValueError(f"bounds must be (T_min, T_max) with T_min < T_max, got {bounds}")
    z, labels = _labels_and_rows(z, labels, "z", ignore_index)
    true = z.gather(-1, labels[:, None]).squeeze(-1)
    n = labels.numel()
    nll_one = _nll_terms(1.0, z, true)[0]

    def result(temperature: float, status: str, iterations: int) -> TemperatureFit:
        nll = _nll_terms(1.0 / temperature, z, true)[0]
        return TemperatureFit(temperature, status, nll, nll_one, n, iterations)

    if bool((z == z[:, :1]).all()):
        return result(1.0, "constant", 0)
    lo, hi = 1.0 / high_t, 1.0 / low_t  # bracket in beta
    if _nll_terms(hi, z, true)[1] <= 0:
        return result(low_t, "separable", 0)
    if _nll_terms(lo, z, true)[1] >= 0:
        return result(high_t, "inverted", 0)
    beta = min(max(1.0, lo), hi)
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        _, grad, curvature = _nll_terms(beta, z, true)
        if grad == 0:
            break
        if grad < 0:
            lo = beta
        else:
            hi = beta
        step = beta - grad / curvature if curvature > 0 else math.nan
        if abs(step - beta) <= 1e-12 * beta:  # converged (also when the step lands on the bracket's end)
            beta = step
            break
        beta = step if lo < step < hi else math.sqrt(lo * hi)
        if hi - lo <= 1e-12 * hi:
            break
    return result(1.0 / beta, "fitted", iterations)


def fit_temperature_for(logits: Any, labels: Any, loss: Any, **kwargs: Any) -> TemperatureFit:
    """:func:`fit_temperature` on a model's ``logits``: divides by ``M`` first for the square loss."""
    values, labels = _labels_and_rows(logits, labels, "logits", kwargs.get("ignore_index", -100))
    return fit_temperature(_unscaled(values, loss_config_of(loss)), labels, **kwargs)


def cross_fitted_metrics(
    logits: Any, labels: Any, loss: Any, *, folds: int = 2, seed: int = 0, n_bins: int = ECE_BINS
) -> tuple[dict[str, float], list[TemperatureFit]]:
    """Metrics after temperature scaling with no item scored by a temperature fitted on it.

    The items are split at random (``seed``) into ``folds`` parts; each part gets the temperature fitted on the
    others; the metrics are computed once on all items. Returns the metrics and the fits (one per part).
    """
    values, labels = _labels_and_rows(logits, labels, "logits")
    if folds < 2 or folds > labels.numel():
        raise ValueError(f"folds must be between 2 and the number of items ({labels.numel()}), got {folds}")
    order = torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(seed))
    parts = order.chunk(folds)
    log_probs = torch.empty_like(values)
    fits = []
    for i, part in enumerate(parts):
        rest = torch.cat([p for j, p in enumerate(parts) if j != i])
        fit = fit_temperature_for(values[rest], labels[rest], loss)
        fits.append(fit)
        log_probs[part] = served_log_probs(values[part], loss, temperature=fit.temperature)
    return calibration_metrics(log_probs.exp(), labels, n_bins=n_bins), fits


# ---- reliability diagram -----------------------------------------------------------------------------------------
def reliability_diagram(
    probabilities: Any,
    labels: Any,
    path: str | Path | None = None,
    *,
    title: str | None = None,
    n_bins: int = ECE_BINS,
    ax: Any = None,
) -> dict[str, Any]:
    """Draw the reliability diagram of class ``probabilities`` (top label, ``n_bins`` equal-width bins).

    Bars: accuracy of each bin at its position; line: the diagonal (perfect calibration); shaded: the gap to the
    bin's mean confidence; the title gives the ECE. Written to ``path`` as PNG when given, or drawn into the
    matplotlib axes ``ax``. Returns the bins (:func:`reliability_bins`) and the metrics.
    """
    probs, labels = _labels_and_rows(probabilities, labels, "probabilities")
    metrics = calibration_metrics(probs, labels, n_bins=n_bins)
    confidence, predicted = probs.max(-1)
    bins = reliability_bins(confidence.clamp(0.0, 1.0), (predicted == labels).double(), n_bins)
    own_figure = ax is None
    import matplotlib

    if own_figure:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = None
    if own_figure:
        fig, ax = plt.subplots(figsize=(4.2, 4.2))
    width = 1.0 / n_bins
    centres = bins["edges"][:-1] + width / 2
    filled = bins["count"] > 0
    ax.bar(
        centres[filled],
        bins["accuracy"][filled],
        width=width,
        edgecolor="black",
        linewidth=0.5,
        color="C0",
        label="accuracy",
    )
    gap_low = np.minimum(bins["accuracy"], bins["confidence"])[filled]
    gap = np.abs(bins["accuracy"] - bins["confidence"])[filled]
    ax.bar(
        centres[filled],
        gap,
        bottom=gap_low,
        width=width,
        color="C3",
        alpha=0.3,
        hatch="//",
        edgecolor="C3",
        linewidth=0.0,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top label)")
    ax.set_ylabel("accuracy")
    heading = f"ECE {100 * metrics['ece']:.2f}%, NLL {metrics['nll']:.3f}"
    ax.set_title(f"{title}\n{heading}" if title else heading, fontsize="small")
    ax.legend(loc="upper left", fontsize="x-small")
    if own_figure:
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
        plt.close(fig)
    return {"bins": bins, "metrics": metrics}


def reliability_figure(panels: Any, path: str | Path, *, n_bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """One PNG with a reliability diagram per ``(probabilities, labels, title)`` of ``panels``, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(panels)
    if not panels:
        raise ValueError("reliability_figure: no panels")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4), squeeze=False)
    out = [
        reliability_diagram(probs, labels, title=title, n_bins=n_bins, ax=ax)
        for ax, (probs, labels, title) in zip(axes[0], panels, strict=True)
    ]
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return out
