"""Writing a sweep's report: ``results.csv``, ``summary.csv``, ``results.json``, ``RESULTS.md``, the plots, and a copy
of every run's summary under ``runs/`` (small files, fit to be committed)."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..registry import loss_types
from ..runs.convergence import RULE
from ..runs.families import describe_tasks, family_of
from ..runs.folder import DATASET_FILE, RUN_ARGS_FILE, SUMMARY_FILE, read_json, write_json
from .aggregate import (
    CALIBRATION_COLUMNS,
    EXTRA_COLUMNS,
    RUN_COLUMNS,
    collect_sweeps,
    metric_names,
    summarise,
)
from .execution import execution_section, run_execution, sweep_execution
from .grid import REFERENCE_LOSS, SweepSpec, reference_protocol
from .paper import HUI_BELKIN_BERT, HUI_BELKIN_SEEDS
from .plots import write_plots
from .runner import STATUS_FILE, SWEEP_FILE, shared_settings_differences

__all__ = [
    "REPORT_KIND",
    "SCORED_SENTENCE",
    "calibration_table",
    "epochs_table",
    "format_results_md",
    "paper_table",
    "per_seed_table",
    "report_title",
    "sessions_lines",
    "summary_copy",
    "task_tables",
    "write_report",
]

REPORT_KIND = "sweep"
"""The ``kind`` written into a report's ``results.json``: the folder says what it is."""


SCORED_SENTENCE = (
    "metrics of the model each run kept (chosen on validation): on the validation (dev) split, and on the test split "
    "where the task has labels for it"
)
"""What a report's and a sweep card's numbers are, in the words both use."""


def _pct(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}"


def _mean_std(entry: Mapping[str, Any]) -> str:
    if entry.get("mean") is None:
        return "–"
    std = entry.get("std")
    return f"{_pct(entry['mean'])} ± {_pct(std)}" if std is not None else _pct(entry["mean"])


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.2f}"


def _delta(entry: Mapping[str, Any]) -> str:
    if "delta_vs_ce" not in entry:
        return ""
    paired = entry.get("paired_delta") or {}
    n = paired.get("n", 0)
    text = _signed(entry.get("delta_vs_ce"))
    if n:
        std = paired.get("std")
        spread = f" ± {_pct(std)}" if std is not None else ""
        text += f" (paired{spread}; better in {entry.get('wins_vs_ce', 0)}/{n})"
    return text


def _loss_label(description: str) -> str:
    """``ce (label_smoothing=0)`` -> ``ce``; other descriptions unchanged (``square (k=1, M=1)``)."""
    return description.replace(" (label_smoothing=0)", "")


def _duration(seconds: float | None) -> str:
    if not seconds:
        return "unknown"
    return str(timedelta(seconds=round(seconds)))


def sessions_lines(status: Mapping[str, Any]) -> list[str]:
    """The sweep's command(s) and wall time, from ``sweep_status.json``: one block per distinct command."""
    sessions = [s for s in status.get("sessions", []) if s.get("command")]
    if not sessions:
        return []
    commands: dict[str, list[Mapping[str, Any]]] = {}
    for session in sessions:
        commands.setdefault(session["command"], []).append(session)
    lines = ["Command" + ("s, in the order they ran" if len(commands) > 1 else "") + ":", ""]
    for command, runs in commands.items():
        seconds = sum(float(s.get("seconds") or 0.0) for s in runs)
        lines += [
            "```bash",
            command,
            "```",
            "",
            f"Wall time: {_duration(seconds)} in {len(runs)} session{'s' if len(runs) != 1 else ''} "
            f"({runs[0]['started_at']} to {runs[-1]['ended_at']}).",
            "",
        ]
    environment = status.get("environment") or {}
    if environment:
        lines += ["Environment: " + ", ".join(f"`{k}={v}`" for k, v in environment.items()) + ".", ""]
    return lines


def _run_path(row: Mapping[str, Any], root: Path) -> Path:
    """The folder of the run of ``row``: under its own sweep folder when the report spans several."""
    return Path(row.get("root") or root) / row["run_dir"]


def _majority(dataset_path: Path) -> str:
    """`` Majority class: 68.38% of validation.`` from ``dataset.json`` when it counts the labels, else ``""``."""
    if not dataset_path.is_file():
        return ""
    dataset = read_json(dataset_path)
    split = dataset.get("eval_split")
    counts = (dataset.get("label_counts") or {}).get(split)
    if not counts or not sum(counts.values()):
        return ""
    name, count = max(counts.items(), key=lambda item: item[1])
    return f" Majority class of {split}: {name}, {100 * count / sum(counts.values()):.2f}%."


def _setup_lines(root: Path, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Model, data and optimisation settings, read from one run of each task, in the words of its family."""
    lines = []
    for task in dict.fromkeys(r["task"] for r in rows):
        first = next(r for r in rows if r["task"] == task)
        args_path = _run_path(first, root) / RUN_ARGS_FILE
        if not args_path.is_file():
            continue
        dataset_path = _run_path(first, root) / DATASET_FILE
        dataset = read_json(dataset_path) if dataset_path.is_file() else {}
        line = family_of(task).setup_line(task, first, read_json(args_path), dataset)
        lines.append(f"- **{task}**: {line}" + _majority(dataset_path))
    return lines


def report_title(tasks: Sequence[str]) -> str:
    """The default title of a report over ``tasks``: what it compared, on which tasks."""
    return f"Loss comparison on {describe_tasks(tasks)}" if tasks else "Loss comparison"


def _metric_title(metric: str) -> str:
    if metric.startswith("test_"):
        return f"{metric.replace('_', ' ')} of the model kept on validation"
    return f"validation {metric.replace('_', ' ')}"


def task_tables(summary: Sequence[Mapping[str, Any]], task: str, protocol: str) -> list[str]:
    cells = [c for c in summary if c["task"] == task and c["protocol"] == protocol]
    if not cells:
        return []
    rates = sorted({c["noise_rate"] for c in cells})
    present = {c["loss_type"] for c in cells}
    losses = [loss for loss in loss_types() if loss in present]  # the registry's order: ce first
    out = []
    for metric in metric_names(task):
        n_seeds = max(c["n_seeds"] for c in cells)
        out += [
            f"**{task}, {protocol.replace('_', ' ')}: {_metric_title(metric)} (%)**, mean ± std over "
            f"{n_seeds} seed{'s' if n_seeds != 1 else ''}; Δ: difference to cross-entropy (`{REFERENCE_LOSS}`, "
            f"{reference_protocol(protocol).replace('_', ' ')}) with the standard deviation of the per-seed differences",
            "",
            "| loss | " + " | ".join(f"noise {r:g} | Δ vs ce" for r in rates) + " |",
            "|---|" + "---|---|" * len(rates),
        ]
        for loss in losses:
            row = [_loss_label(next(c["loss"] for c in cells if c["loss_type"] == loss))]
            for rate in rates:
                cell = next((c for c in cells if c["loss_type"] == loss and c["noise_rate"] == rate), None)
                entry = cell["metrics"][metric] if cell else {}
                row += [_mean_std(entry) + _not_converged_mark(cell), _delta(entry)]
            out.append("| " + " | ".join(row) + " |")
        out.append("")
        out += convergence_note(cells)
    permuting = {
        c["noise_rate"]: c for c in cells if c.get("true_label_most_likely") is False and c["noise_rate"] > 0
    }
    for rate, cell in sorted(permuting.items()):
        out += [
            f"At noise {rate:g} ({cell['noise_type']}, {cell.get('num_classes') or '?'} classes), a wrong label is "
            "more likely than the true one: the best fit to the noisy labels does not predict the true class, "
            "whatever the loss, and accuracy below chance is expected "
            "(`hf_squareloss.noise.true_label_stays_most_likely`).",
            "",
        ]
    return out


NOT_CONVERGED_MARK = "†"


def _not_converged_mark(cell: Mapping[str, Any] | None) -> str:
    """``" †(k/n)"`` when ``k`` of the cell's ``n`` runs were still improving when training ended."""
    if not cell or not cell.get("not_converged"):
        return ""
    return f" {NOT_CONVERGED_MARK}({cell['not_converged']}/{cell['n_seeds']})"


def convergence_note(cells: Sequence[Mapping[str, Any]]) -> list[str]:
    """The sentence under a results table: whether its runs had finished learning (:mod:`hf_squareloss.runs.convergence`)."""
    runs = sum(c["n_seeds"] for c in cells)
    improving = sum(c.get("not_converged", 0) for c in cells)
    undecided = sum(c.get("undecided", 0) for c in cells)
    early = " (early-stopped runs count as converged by construction)"
    if improving:
        return [
            f"{NOT_CONVERGED_MARK}(k/n): k of the cell's n runs were **still improving** when training ended. "
            f"**This comparison is not converged**: {improving} of {runs} runs had not finished learning, so their "
            f"numbers measure how fast each loss learns, not where it ends{early}. Rule: {RULE}.",
            "",
        ]
    if undecided:
        return [
            f"{undecided} of {runs} runs have too short a validation curve to tell whether they converged; the "
            f"others converged{early}. Rule: {RULE}.",
            "",
        ]
    return [f"Every run converged{early}. Rule: {RULE}.", ""]


def paper_table(summary: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| task | metric | Hui & Belkin BERT: square | ce | Δ | ours: square | ce | Δ (paired ± std) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    found = False
    for task, metrics in HUI_BELKIN_BERT.items():
        for metric, values in metrics.items():
            ours = {
                c["loss_type"]: c["metrics"].get(metric, {})
                for c in summary
                if c["task"] == task and c["protocol"] == "early_stopping" and c["noise_rate"] == 0.0
            }
            if "square" not in ours and REFERENCE_LOSS not in ours:
                continue
            found = True
            square, ce = ours.get("square", {}), ours.get(REFERENCE_LOSS, {})
            lines.append(
                f"| {task} | {metric} | {values['square']:.1f} | {values['ce']:.1f} | "
                f"{values['square'] - values['ce']:+.1f} | {_mean_std(square)} | {_mean_std(ce)} | {_delta(square)} |"
            )
    return lines if found else []


def format_results_md(
    root: Path,
    rows: Sequence[Mapping[str, Any]],
    summary: Sequence[Mapping[str, Any]],
    *,
    title: str | None = None,
    status: Mapping[str, Any] | None = None,
    plots: Sequence[Path] = (),
    included: Sequence[tuple[Path, Mapping[str, Any]]] = (),
) -> str:
    """The Markdown report of a sweep (and of the sweep folders ``included`` in it: ``(folder, status)``)."""
    status = status or {}
    lines = [f"# {title or report_title(list(dict.fromkeys(r['task'] for r in rows)))}", ""]
    lines += [
        f"{len(rows)} finished runs; {SCORED_SENTENCE}. Generated by "
        "`hf-squareloss compare` from the run folders; per-run numbers in `results.csv`, per-cell statistics in "
        "`summary.csv` and `results.json`, each run's summary under `runs/`.",
        "",
    ]
    if included:
        folders = [(root, status), *included]
        lines += [
            f"The runs come from {len(folders)} sweep folders with the same settings:",
            "",
        ]
        for folder, folder_status in folders:
            lines += [f"**`{folder}`** ({sum(r.get('root') == str(folder) for r in rows)} runs)", ""]
            lines += sessions_lines(folder_status)
    else:
        lines += sessions_lines(status)
    setup = _setup_lines(root, rows)
    if setup:
        lines += ["## Setup", "", *setup, ""]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    lines += ["## Results", ""]
    for task in tasks:
        for protocol in protocols:
            lines += task_tables(summary, task, protocol)
    paper = paper_table(summary)
    if paper:
        lines += [
            "## Beside Hui & Belkin (ICLR 2021)",
            "",
            f"Their BERT fine-tuning numbers (mean of {HUI_BELKIN_SEEDS} seeds, clean labels) and ours at noise 0 "
            "with early stopping.",
            "",
            *paper,
            "",
        ]
    calibration = calibration_table(summary)
    if calibration:
        lines += ["## Calibration", "", *calibration, ""]
    epochs = epochs_table(summary)
    if epochs:
        lines += ["## Epochs", "", *epochs, ""]
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{p.stem.replace('_', ' ')}]({p.name})" for p in plots]
        lines.append("")
    lines += ["## Per seed", "", per_seed_table(rows), ""]
    lines += execution_section(rows, [(root, status), *included])
    return "\n".join(lines)


def _number(entry: Mapping[str, Any] | None, scale: float = 1.0, digits: int = 3) -> str:
    if not entry or entry.get("mean") is None:
        return "–"
    text = f"{scale * entry['mean']:.{digits}f}"
    return text + (f" ± {scale * entry['std']:.{digits}f}" if entry.get("std") is not None else "")


def calibration_table(summary: Sequence[Mapping[str, Any]]) -> list[str]:
    """ECE, NLL and Brier score of the served probabilities before and after temperature scaling, per cell: on the
    validation set (where the temperature is fitted), then on the test split for the cells whose runs scored one."""
    order = {loss: i for i, loss in enumerate(loss_types())}

    def cells_with(prefix: str) -> list[Mapping[str, Any]]:
        return sorted(
            (c for c in summary if (c.get("calibration") or {}).get(f"{prefix}ece_before", {}).get("n")),
            key=lambda c: (c["task"], c["protocol"], c["noise_rate"], order.get(c["loss_type"], len(order))),
        )

    def table(cells: Sequence[Mapping[str, Any]], prefix: str) -> list[str]:
        lines = [
            "| task | protocol | noise | loss | ECE before | ECE after | NLL before | NLL after | Brier before | "
            "Brier after | T |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in cells:
            cal = c["calibration"]
            lines.append(
                f"| {c['task']} | {c['protocol']} | {c['noise_rate']:g} | {c['loss_type']} | "
                f"{_number(cal[f'{prefix}ece_before'], 100, 2)} | {_number(cal[f'{prefix}ece_after'], 100, 2)} | "
                f"{_number(cal[f'{prefix}nll_before'])} | {_number(cal[f'{prefix}nll_after'])} | "
                f"{_number(cal[f'{prefix}brier_before'])} | {_number(cal[f'{prefix}brier_after'])} | "
                f"{_number(cal['temperature'], 1, 4)}{_not_fitted_mark(c)} |"
            )
        return lines

    validation, test = cells_with(""), cells_with("test_")
    lines: list[str] = []
    if validation:
        lines += [
            "Calibration of the probabilities each model serves on the validation set (`softmax(z / T)`, `z` the "
            "logits, or `logits / M` for the square loss), mean ± std over seeds. *Before*: `T = 1`; *after*: `T` "
            "fitted on the same validation set by minimising the NLL (runs with `--calibrate`), so the *after* "
            "figures are in-sample for that one parameter. ECE: top label, 15 equal-width bins, %. The square "
            "loss's *before* figures depend on the convention `T = 1` on `logits / M`; compare losses *after* "
            "scaling.",
            "",
            *table(validation, ""),
        ]
    if test:
        lines += [
            *([""] if lines else []),
            "The same on the **test split**, which neither training nor the temperature saw: the *after* figures "
            "here are held out.",
            "",
            *table(test, "test_"),
        ]
    not_fitted = sum(c.get("temperature_not_fitted", 0) for c in validation)
    if not_fitted:
        lines += [
            "",
            f"{NOT_FITTED_MARK}(k/n): in k of the cell's n runs ({not_fitted} in all) the validation NLL had no "
            "minimum inside the temperature's search range, and `T` is an end of it: `inverted` (the true class "
            "scores below the model's average, so the NLL falls as `T` grows: the upper end, near-uniform "
            "probabilities), `separable` (every item right with a margin: the lower end) or `constant` (`T = 1`). "
            "Each run's `calibration.status` in its `run_summary.json` says which.",
        ]
    return lines


NOT_FITTED_MARK = "‡"


def _not_fitted_mark(cell: Mapping[str, Any]) -> str:
    """``" ‡(k/n)"`` when the temperature of ``k`` of the cell's ``n`` runs is not an interior minimum of the NLL."""
    if not cell.get("temperature_not_fitted"):
        return ""
    return f" {NOT_FITTED_MARK}({cell['temperature_not_fitted']}/{cell['n_seeds']})"


def epochs_table(summary: Sequence[Mapping[str, Any]]) -> list[str]:
    """Mean over seeds of the epoch of the kept model and of the epochs run, per cell."""
    order = {loss: i for i, loss in enumerate(loss_types())}
    cells = sorted(
        (
            c
            for c in summary
            if c["model_epoch"]["mean"] is not None and c["epochs_trained"]["mean"] is not None
        ),
        key=lambda c: (c["task"], c["protocol"], c["noise_rate"], order.get(c["loss_type"], len(order))),
    )
    if not cells:
        return []
    lines = [
        "Mean over seeds of the epoch whose model was kept and of the epochs run; how many runs converged.",
        "",
        "| task | protocol | noise | loss | kept epoch | epochs run | converged |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        converged = c["n_seeds"] - c.get("not_converged", 0) - c.get("undecided", 0)
        lines.append(
            f"| {c['task']} | {c['protocol']} | {c['noise_rate']:g} | {c['loss_type']} | "
            f"{c['model_epoch']['mean']:.2f} | {c['epochs_trained']['mean']:.2f} | {converged}/{c['n_seeds']} |"
        )
    return lines


def per_seed_table(rows: Sequence[Mapping[str, Any]]) -> str:
    metrics = list(dict.fromkeys(m for r in rows for m in metric_names(r["task"])))
    head = [
        "task",
        "protocol",
        "loss",
        "noise",
        "realised noise",
        "seed",
        *metrics,
        "kept epoch",
        "epochs run",
        "converged",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        values = [_pct(r.get(m)) if m in r else "" for m in metrics]
        lines.append(
            "| "
            + " | ".join(
                [
                    r["task"],
                    r["protocol"],
                    r["loss_type"],
                    f"{r['noise_rate']:g}",
                    f"{r['realised_noise_rate']:.3f}",
                    str(r["seed"]),
                    *values,
                    f"{r['model_epoch']:g}" if r["model_epoch"] is not None else "–",
                    f"{r['epochs_trained']:g}" if r["epochs_trained"] is not None else "–",
                    _converged_text(r.get("converged")),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def _converged_text(value: bool | None) -> str:
    return {True: "yes", False: f"no {NOT_CONVERGED_MARK}", None: "–"}[value]


def summary_copy(report_dir: str | Path, run_dir: str) -> Path:
    """Where the report keeps its copy of the summary of the run in ``run_dir`` (relative to the sweep root)."""
    return Path(report_dir) / "runs" / Path(run_dir).parent / f"{Path(run_dir).name}.json"


def _write_csv(path: Path, header: Sequence[str], records: Sequence[Mapping[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(header), extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow({k: ("" if record.get(k) is None else record.get(k)) for k in header})


def _summary_records(summary: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    records = []
    for cell in summary:
        entries = {**cell["metrics"], **{k: v for k, v in cell.get("calibration", {}).items() if v["n"]}}
        for metric, entry in entries.items():
            paired = entry.get("paired_delta") or {}
            records.append(
                {
                    "task": cell["task"],
                    "protocol": cell["protocol"],
                    "loss_type": cell["loss_type"],
                    "loss": cell["loss"],
                    "noise_rate": cell["noise_rate"],
                    "metric": metric,
                    "n_seeds": entry["n"],
                    "mean": entry["mean"],
                    "std": entry["std"],
                    "delta_vs_ce": entry.get("delta_vs_ce"),
                    "paired_delta_std": paired.get("std"),
                    "wins_vs_ce": entry.get("wins_vs_ce"),
                    "per_seed": " ".join(
                        f"{s}:{v:.4f}" for s, v in entry["per_seed"].items() if v is not None
                    ),
                }
            )
    return records


def write_report(
    root: str | Path,
    report_dir: str | Path | None = None,
    *,
    spec: SweepSpec | None = None,
    title: str | None = None,
    include: Sequence[str | Path] = (),
) -> list[Path]:
    """Aggregate the finished runs under ``root`` into ``report_dir`` (default ``root``); return the files written.

    ``include``: other sweep folders whose runs join the report (a grid split over processes or machines). They
    must share ``root``'s settings (:data:`~hf_squareloss.compare.runner.SHARED_SETTINGS`), and no run may be in
    two folders; the report lists the commands and wall times of every folder.
    """
    root = Path(root).resolve()
    report_dir = Path(report_dir or root).resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    sweep = read_json(root / SWEEP_FILE) if (root / SWEEP_FILE).is_file() else {}
    others = [Path(p).resolve() for p in include]
    for other in others:
        if other == root or not (other / SWEEP_FILE).is_file():
            raise ValueError(f"{other} is not another sweep folder (no {SWEEP_FILE})")
        reference = spec.to_dict() if spec else sweep.get("spec", {})
        details = shared_settings_differences(read_json(other / SWEEP_FILE).get("spec", {}), reference)
        if details:
            raise ValueError(f"{other} is a sweep with other shared settings than {root} ({details})")
    rows = collect_sweeps([root, *others])
    summary = summarise(rows)
    statuses = [
        (folder, read_json(folder / STATUS_FILE) if (folder / STATUS_FILE).is_file() else {})
        for folder in [root, *others]
    ]
    status = statuses[0][1]
    by_root = {str(folder): folder_status for folder, folder_status in statuses}
    written: list[Path] = []

    metrics = list(dict.fromkeys(m for r in rows for m in metric_names(r["task"])))
    _write_csv(
        report_dir / "results.csv", [*RUN_COLUMNS, *metrics, *CALIBRATION_COLUMNS, *EXTRA_COLUMNS], rows
    )
    _write_csv(
        report_dir / "summary.csv",
        [
            "task",
            "protocol",
            "loss_type",
            "loss",
            "noise_rate",
            "metric",
            "n_seeds",
            "mean",
            "std",
            "delta_vs_ce",
            "paired_delta_std",
            "wins_vs_ce",
            "per_seed",
        ],
        _summary_records(summary),
    )
    write_json(
        report_dir / "results.json",
        {
            "kind": REPORT_KIND,
            "sweep": {
                "root": str(root),
                "spec": spec.to_dict() if spec else sweep.get("spec"),
                "command": status.get("command"),
                "wall_seconds_all_sessions": status.get("wall_seconds_all_sessions"),
                "sessions": status.get("sessions", []),
                **sweep_execution(status),
                "included": [
                    {
                        "root": str(folder),
                        "command": other_status.get("command"),
                        "wall_seconds_all_sessions": other_status.get("wall_seconds_all_sessions"),
                        "sessions": other_status.get("sessions", []),
                        **sweep_execution(other_status),
                    }
                    for folder, other_status in statuses[1:]
                ],
            },
            "summary": summary,
            "runs": [
                {
                    **{k: v for k, v in r.items() if k != "history"},
                    **run_execution(by_root.get(r.get("root"), status), r["run_dir"]),
                }
                for r in rows
            ],
        },
    )
    written += [report_dir / "results.csv", report_dir / "summary.csv", report_dir / "results.json"]
    plots = write_plots(rows, report_dir) if rows else []
    written += plots
    for r in rows:
        target = summary_copy(report_dir, r["run_dir"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_run_path(r, root) / SUMMARY_FILE, target)
    md = format_results_md(
        root, rows, summary, title=title, status=status, plots=plots, included=statuses[1:]
    )
    (report_dir / "RESULTS.md").write_text(md, encoding="utf-8")
    written.append(report_dir / "RESULTS.md")
    return written
