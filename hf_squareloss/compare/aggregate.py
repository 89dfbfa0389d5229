"""Collecting the finished runs of a sweep folder into per-run rows and per-cell statistics.

A cell is (task, protocol, loss type, noise rate); its statistics are over seeds: mean, sample standard deviation
(``ddof=1``), the per-seed values, and the difference to cross-entropy in the same task and noise rate (for
``same_epochs`` cells: to the ``early_stopping`` ``ce`` runs they matched), both as a difference of means and
paired by seed.

Every run also says whether it had finished learning (:mod:`hf_squareloss.runs.convergence`): ``converged``
(``True``, ``False``: still improving, ``None``: undecided) and the reason, from its ``run_summary.json`` or, for a
summary written before runs recorded it, from its per-epoch history by the same rule (``convergence_source``:
``"run"`` or ``"history"``). A cell counts its runs still improving (``not_converged``), and the runs whose
temperature was not an interior minimum of the validation NLL (``temperature_not_fitted``; each run's
``temperature_status`` is :attr:`hf_squareloss.calibration.TemperatureFit.status`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..noise import true_label_stays_most_likely
from ..registry import loss_types
from ..runs.convergence import judge_summary
from ..runs.families import family_of
from ..runs.folder import SUMMARY_FILE, read_json
from .grid import REFERENCE_LOSS, reference_protocol

__all__ = [
    "CALIBRATION_COLUMNS",
    "calibration_values",
    "cell_key",
    "collect_runs",
    "metric_names",
    "summarise",
]

RUN_COLUMNS = (
    "task",
    "protocol",
    "loss_type",
    "loss",
    "noise_type",
    "noise_rate",
    "realised_noise_rate",
    "seed",
)
CALIBRATION_COLUMNS = (
    "ece_before",
    "ece_after",
    "nll_before",
    "nll_after",
    "brier_before",
    "brier_after",
    "temperature",
    "test_ece_before",
    "test_ece_after",
    "test_nll_before",
    "test_nll_after",
    "test_brier_before",
    "test_brier_after",
)
"""Calibration of the served probabilities on the (first) validation split: before temperature scaling (``T = 1``)
and after it (only for runs with ``--calibrate``), and the fitted temperature; then the same on the test split where
the run scored one (``test_*``), which the temperature was not fitted on."""
EXTRA_COLUMNS = (
    "temperature_status",
    "model_epoch",
    "best_epoch",
    "epochs_trained",
    "stopped_early",
    "converged",
    "convergence",
    "num_train_examples",
    "num_eval_examples",
    "train_seconds",
    "wall_seconds",
    "run_dir",
)


def metric_names(task: str) -> list[str]:
    """The metrics of ``task`` in the report, as its family names them."""
    return family_of(task).metric_names(task)


def calibration_values(summary: Mapping[str, Any]) -> dict[str, float | None]:
    """The :data:`CALIBRATION_COLUMNS` of a run summary (``None`` where the run did not compute them)."""
    calibration = summary.get("calibration") or {}
    calibrated = calibration.get("temperature") is not None
    out: dict[str, float | None] = {}
    splits = (
        ("", "eval_", summary.get("eval_metrics") or {}),
        ("test_", "test_", summary.get("test_metrics") or {}),
    )
    for column, key, metrics in splits:
        for name in ("ece", "nll", "brier"):
            before = metrics.get(f"{key}{name}_uncalibrated" if calibrated else f"{key}{name}")
            after = metrics.get(f"{key}{name}") if calibrated else None
            out[f"{column}{name}_before"] = float(before) if before is not None else None
            out[f"{column}{name}_after"] = float(after) if after is not None else None
    out["temperature"] = float(calibration["temperature"]) if calibrated else None
    return {name: out[name] for name in CALIBRATION_COLUMNS}


def _true_label_most_likely(noise: Mapping[str, Any]) -> bool | None:
    """From the run's noise record; computed for records written before it held the answer."""
    if not float(noise.get("rate", 0.0) or 0.0):
        return True
    if "true_label_most_likely" in noise:
        return bool(noise["true_label_most_likely"])
    try:
        return true_label_stays_most_likely(noise["rate"], noise["noise_type"], int(noise["num_classes"]))
    except (KeyError, TypeError, ValueError):
        return None


def _row(summary: Mapping[str, Any], run_dir: str) -> dict[str, Any]:
    noise = summary.get("label_noise") or {}
    evals = summary.get("eval_metrics") or {}
    row: dict[str, Any] = {
        "task": summary["task"],
        "protocol": summary["protocol"]["name"],
        "loss_type": summary["loss"]["loss_type"],
        "loss": summary.get("loss_description", summary["loss"]["loss_type"]),
        "noise_type": noise.get("noise_type", "none"),
        "noise_rate": float(noise.get("rate", 0.0)),
        "realised_noise_rate": float(noise.get("realised_rate", 0.0)),
        "true_label_most_likely": _true_label_most_likely(noise),
        "num_classes": noise.get("num_classes"),
        "seed": int(summary["seed"]),
    }
    tests = summary.get("test_metrics") or {}
    for name in metric_names(summary["task"]):
        value = tests.get(name) if name.startswith("test_") else evals.get(f"eval_{name}")
        row[name] = float(value) if value is not None else None
    row.update(calibration_values(summary))
    row["temperature_status"] = (summary.get("calibration") or {}).get("status")
    recorded = summary.get("convergence")
    verdict = recorded if isinstance(recorded, Mapping) else judge_summary(summary).to_dict()
    row.update(
        model_epoch=summary.get("model_epoch"),
        best_epoch=summary.get("best_epoch"),
        epochs_trained=summary.get("epochs_trained"),
        stopped_early=summary.get("stopped_early"),
        converged=verdict.get("converged"),
        convergence=verdict.get("reason"),
        convergence_source="run" if isinstance(recorded, Mapping) else "history",
        num_train_examples=summary.get("num_train_examples"),
        num_eval_examples=sum((summary.get("num_eval_examples") or {}).values()) or None,
        train_seconds=(summary.get("train_metrics") or {}).get("train_runtime"),
        wall_seconds=summary.get("wall_seconds"),
        run_dir=run_dir,
        history=summary.get("history", []),
    )
    return row


def collect_runs(root: str | Path) -> list[dict[str, Any]]:
    """One row per finished run under ``root`` (any depth), sorted by task, protocol, noise, loss (in the
    registry's order), seed."""
    root = Path(root)
    rows = [_row(read_json(path), str(path.parent.relative_to(root))) for path in root.rglob(SUMMARY_FILE)]
    order = {loss: i for i, loss in enumerate(loss_types())}
    return sorted(
        rows,
        key=lambda r: (r["task"], r["protocol"], r["noise_rate"], order.get(r["loss_type"], 99), r["seed"]),
    )


def collect_sweeps(roots: Sequence[str | Path]) -> list[dict[str, Any]]:
    """:func:`collect_runs` over several sweep folders (a grid split over processes or machines), each row with its
    ``root``. The same run (task, protocol, loss, noise rate, seed) in two folders is refused."""
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[Any, ...], str] = {}
    for root in roots:
        root = Path(root).resolve()
        for row in collect_runs(root):
            key = (*cell_key(row), row["seed"])
            where = str(root / row["run_dir"])
            if key in seen:
                raise ValueError(f"the same run is in two sweep folders: {seen[key]} and {where}; keep one")
            seen[key] = where
            rows.append({**row, "root": str(root)})
    order = {loss: i for i, loss in enumerate(loss_types())}
    return sorted(
        rows,
        key=lambda r: (r["task"], r["protocol"], r["noise_rate"], order.get(r["loss_type"], 99), r["seed"]),
    )


def cell_key(row: Mapping[str, Any]) -> tuple[str, str, str, float]:
    return (row["task"], row["protocol"], row["loss_type"], row["noise_rate"])


def _stats(values: Sequence[float]) -> dict[str, Any]:
    clean = [v for v in values if v is not None and math.isfinite(v)]
    return {
        "mean": statistics.fmean(clean) if clean else None,
        "std": statistics.stdev(clean) if len(clean) > 1 else None,
        "n": len(clean),
    }


def _reference_rows(
    rows: Iterable[Mapping[str, Any]], task: str, noise_rate: float, protocol: str = "early_stopping"
) -> dict[int, Mapping[str, Any]]:
    return {
        r["seed"]: r
        for r in rows
        if r["task"] == task
        and r["protocol"] == reference_protocol(protocol)
        and r["loss_type"] == REFERENCE_LOSS
        and r["noise_rate"] == noise_rate
    }


def summarise(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per-cell statistics over seeds, with the differences to cross-entropy."""
    cells: dict[tuple[str, str, str, float], list[Mapping[str, Any]]] = {}
    for row in rows:
        cells.setdefault(cell_key(row), []).append(row)
    out = []
    for (task, protocol, loss_type, noise_rate), members in sorted(cells.items()):
        members = sorted(members, key=lambda r: r["seed"])
        reference = _reference_rows(rows, task, noise_rate, protocol)
        cell: dict[str, Any] = {
            "task": task,
            "protocol": protocol,
            "loss_type": loss_type,
            "loss": members[0]["loss"],
            "noise_rate": noise_rate,
            "noise_type": members[0]["noise_type"],
            "realised_noise_rate": _stats([r["realised_noise_rate"] for r in members])["mean"],
            "true_label_most_likely": members[0].get("true_label_most_likely"),
            "num_classes": members[0].get("num_classes"),
            "seeds": [r["seed"] for r in members],
            "n_seeds": len(members),
            "not_converged": sum(r.get("converged") is False for r in members),
            "temperature_not_fitted": sum(
                r.get("temperature_status") not in (None, "fitted") for r in members
            ),
            "undecided": sum(r.get("converged") is None for r in members),
            "model_epoch": _stats([r["model_epoch"] for r in members]),
            "epochs_trained": _stats([r["epochs_trained"] for r in members]),
            "metrics": {},
            "calibration": {
                name: {
                    **_stats([r.get(name) for r in members]),
                    "per_seed": {r["seed"]: r.get(name) for r in members},
                }
                for name in CALIBRATION_COLUMNS
            },
        }
        for name in metric_names(task):
            values = [r.get(name) for r in members]
            greater = family_of(task).greater_is_better(task, name)
            entry = {
                **_stats(values),
                "per_seed": dict(zip(cell["seeds"], values, strict=True)),
                "greater_is_better": greater,
            }
            ref_values = [r.get(name) for r in reference.values()]
            is_reference = protocol == reference_protocol(protocol) and loss_type == REFERENCE_LOSS
            if reference and not is_reference:
                ref = _stats(ref_values)
                paired = [
                    r[name] - reference[r["seed"]][name]
                    for r in members
                    if r["seed"] in reference
                    and r.get(name) is not None
                    and reference[r["seed"]].get(name) is not None
                ]
                entry["delta_vs_ce"] = (
                    entry["mean"] - ref["mean"]
                    if entry["mean"] is not None and ref["mean"] is not None
                    else None
                )
                entry["paired_delta"] = _stats(paired)
                entry["wins_vs_ce"] = sum((d > 0) if greater else (d < 0) for d in paired)
                entry["ties_vs_ce"] = sum(d == 0 for d in paired)
            cell["metrics"][name] = entry
        out.append(cell)
    return out
