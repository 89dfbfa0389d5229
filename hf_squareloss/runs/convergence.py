"""Had a run finished learning when its training ended? The convergence rule of every recipe run and sweep report.

A comparison of losses is evidence only when each run has reached where its loss takes it: a run cut while its
validation score still climbs measures how fast the loss learns, not where it ends. The rule, from the run's
per-epoch validation curve of the metric the protocol selects the model on:

* **Last quarter.** With ``E`` epochs trained, the last quarter is the evaluations after epoch ``0.75 E``. The run
  **converged** when the best score of its last quarter is not better than the best score before it by more than
  the tolerance (``0.005`` in the metric's units: half a point of accuracy): its best was reached before the last
  quarter, or the last quarter only stayed near it. It is **still improving** otherwise.
* **Early stopping.** A run stopped early by its protocol (``early_stopping``: the patience ran out without a better
  score) converged by construction.
* **Undecided** (``None``) when the curve cannot tell: fewer than two evaluations, or none before or after the
  last-quarter boundary.

This is a statement about the validation curve at the end of the schedule it was given, not about the optimum of
the loss: with a step schedule whose last drop falls in the last quarter (the ``tce_paper`` protocol), a flat last
quarter may also come from the small learning rate. The report therefore also plots every cell's learning curves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_TOLERANCE",
    "ERROR_RATE_TOLERANCE",
    "LAST_FRACTION",
    "RULE",
    "Convergence",
    "judge",
    "judge_record",
    "judge_summary",
    "verdicts",
]

LAST_FRACTION = 0.25
DEFAULT_TOLERANCE = 0.005
ERROR_RATE_TOLERANCE = 0.5
"""For error rates in percent (the ASR recipes' WER, CER, PER): half a point, as ``0.005`` is for a fraction."""
RULE = (
    "converged: the best validation score of the last quarter of the epochs is at most "
    f"{DEFAULT_TOLERANCE:g} (metric units) better than the best before it, or the run stopped early "
    "(early stopping: converged by construction); still improving otherwise"
)


@dataclass(frozen=True)
class Convergence:
    """The verdict of :func:`judge` on one run, and the numbers behind it (stored in ``run_summary.json``)."""

    converged: bool | None
    reason: str
    metric: str | None = None
    greater_is_better: bool = True
    epochs: float | None = None
    last_quarter_after_epoch: float | None = None
    best_before: float | None = None
    best_in_last_quarter: float | None = None
    gain_in_last_quarter: float | None = None
    tolerance: float = DEFAULT_TOLERANCE
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _key(metric: str) -> str:
    return metric if metric.startswith("eval_") else f"eval_{metric}"


def judge(
    history: Sequence[Mapping[str, Any]],
    metric: str,
    *,
    greater_is_better: bool = True,
    epochs: float | None = None,
    stopped_early: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Convergence:
    """The rule of this module on a per-epoch ``history`` (``[{"epoch": 1.0, "eval_accuracy": ...}, ...]``) of
    ``metric`` (``accuracy`` or ``eval_accuracy``); ``epochs``: epochs trained (default: the last evaluation's)."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    key = _key(metric)
    points = [(float(h["epoch"]), float(h[key])) for h in history if h.get(key) is not None and "epoch" in h]
    base = {"metric": key, "greater_is_better": greater_is_better, "tolerance": tolerance}
    if stopped_early:
        return Convergence(
            True,
            "stopped early: the protocol's patience ran out without a better score",
            stopped_early=True,
            **base,
        )
    if len(points) < 2:
        return Convergence(None, f"{len(points)} evaluation(s) of {key}: too few to tell", **base)
    total = float(epochs) if epochs else max(e for e, _ in points)
    boundary = total * (1.0 - LAST_FRACTION)
    before = [v for e, v in points if e <= boundary + 1e-9]
    last = [v for e, v in points if e > boundary + 1e-9]
    if not before or not last:
        return Convergence(
            None,
            f"no evaluation {'before' if not before else 'after'} epoch {boundary:g}",
            epochs=total,
            **base,
        )
    best = max if greater_is_better else min
    best_before, best_last = best(before), best(last)
    gain = (best_last - best_before) if greater_is_better else (best_before - best_last)
    converged = gain <= tolerance
    verdict = "converged" if converged else "still improving"
    reason = (
        f"{verdict}: best {key} after epoch {boundary:g} is {best_last:.4g}, {gain:+.4g} on the best before "
        f"({best_before:.4g}; tolerance {tolerance:g})"
    )
    return Convergence(
        converged,
        reason,
        epochs=total,
        last_quarter_after_epoch=boundary,
        best_before=best_before,
        best_in_last_quarter=best_last,
        gain_in_last_quarter=gain,
        **base,
    )


def judge_summary(summary: Mapping[str, Any], *, tolerance: float = DEFAULT_TOLERANCE) -> Convergence:
    """:func:`judge` on a finished run's ``run_summary.json`` (its history, the protocol's selection metric and
    direction, epochs trained, early stop): for summaries written before they recorded a verdict."""
    protocol = summary.get("protocol") or {}
    metric = protocol.get("metric_for_best_model") or next(iter(summary.get("best_metric") or {}), None)
    if metric is None:
        return Convergence(None, "the run names no selection metric")
    return judge(
        summary.get("history") or [],
        metric,
        greater_is_better=bool(protocol.get("greater_is_better", True)),
        epochs=summary.get("epochs_trained"),
        stopped_early=bool(summary.get("stopped_early")),
        tolerance=tolerance,
    )


def judge_record(record: Mapping[str, Any]) -> Convergence:
    """:func:`judge` on any finished run's record: a recipe's ``run_summary.json`` (its recorded verdict, else its
    history), or an ASR run's ``results.json`` (``kind: asr_run``; the greedy validation error rate, lower is
    better, tolerance :data:`ERROR_RATE_TOLERANCE`)."""
    recorded = record.get("convergence")
    if isinstance(recorded, Mapping) and "converged" in recorded:
        return Convergence(**{k: v for k, v in recorded.items() if k in Convergence.__dataclass_fields__})
    if record.get("kind") == "asr_run":
        history = record.get("history") or []
        metric = next((m for m in ("eval_wer", "eval_per") if any(m in h for h in history)), "eval_wer")
        return judge(
            history,
            metric,
            greater_is_better=False,
            epochs=record.get("epochs"),
            tolerance=ERROR_RATE_TOLERANCE,
        )
    return judge_summary(record)


def verdicts(paths: Sequence[str | Path]) -> list[tuple[Path, Convergence]]:
    """The verdict of every finished run under ``paths`` (folders searched for ``run_summary.json`` and an ASR
    run's ``results.json``; a ``.json`` file is read as it is, e.g. the summaries a report copies under ``runs/``)."""
    import json

    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += sorted(path.rglob("run_summary.json")) + sorted(path.rglob("results.json"))
            files += [
                f for f in sorted(path.rglob("*.json")) if f.parent.name != "checkpoint" and f not in files
            ]
        else:
            raise ValueError(f"{path}: no such file or folder")
    out = []
    for file in dict.fromkeys(files):
        try:
            record = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(record, Mapping) or not (
            record.get("kind") == "asr_run" or ("history" in record and "protocol" in record)
        ):
            continue  # not a finished run's record
        out.append((file, judge_record(record)))
    return out
