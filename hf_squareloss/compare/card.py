"""The model card of a comparison sweep (``hf-squareloss compare``): the losses compared, their numbers, the plots.

Every number comes from :mod:`.aggregate` (the same statistics as the sweep's ``results.json``) and every table
from :mod:`.report` (the same tables as its ``RESULTS.md``), so the card and the report cannot disagree. The card
reads either a sweep folder (its run folders) or a report folder (``results.json`` and the run summaries copied
under ``runs/``), such as ``recipes/glue/results``. What the card says about the tasks (title, tags, data sets,
pipeline) comes from their families (:mod:`hf_squareloss.runs.families`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..model_card import citation_section, fmt, front_matter, loss_block, save_card, validate_card
from ..registry import LossConfig, loss_types
from ..runs.families import CardMetadata, describe_tasks, family_of
from ..runs.folder import SUMMARY_FILE, read_json
from .aggregate import collect_runs, summarise
from .grid import REFERENCE_LOSS
from .paper import HUI_BELKIN_SEEDS
from .report import (
    REPORT_KIND,
    SCORED_SENTENCE,
    calibration_table,
    epochs_table,
    paper_table,
    per_seed_table,
    sessions_lines,
    summary_copy,
    task_tables,
)
from .runner import STATUS_FILE, SWEEP_FILE

__all__ = ["is_sweep_folder", "render_sweep_card", "write_sweep_card"]

RESULTS_FILE = "results.json"


def is_sweep_folder(folder: str | os.PathLike) -> bool:
    """True for a sweep folder (its ``sweep.json``) or a sweep's report folder (``results.json`` of kind sweep).

    A report written before reports recorded their kind is recognised by its ``sweep`` and ``summary`` entries."""
    folder = Path(folder)
    if (folder / SWEEP_FILE).is_file():
        return True
    path = folder / RESULTS_FILE
    if not path.is_file():
        return False
    try:
        data = read_json(path)
    except ValueError:
        return False
    if not isinstance(data, dict):
        return False
    if "kind" in data:
        return data["kind"] == REPORT_KIND
    return "sweep" in data and "summary" in data


def _rows_and_context(root: Path) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """The runs (as :func:`.aggregate.collect_runs` gives them), the sweep's spec and its status."""
    results = read_json(root / RESULTS_FILE) if (root / RESULTS_FILE).is_file() else {}
    sweep = results.get("sweep") or {}
    rows = collect_runs(root)
    if not rows:  # a report folder: the runs as the report collected them
        rows = [dict(r) for r in results.get("runs", [])]
    if not rows:
        raise ValueError(f"{root} holds no finished run of a sweep and no {RESULTS_FILE} listing them")
    spec = sweep.get("spec") or {}
    if not spec and (root / SWEEP_FILE).is_file():
        spec = read_json(root / SWEEP_FILE).get("spec") or {}
    status = read_json(root / STATUS_FILE) if (root / STATUS_FILE).is_file() else dict(sweep)
    return rows, spec, status


def _loss_records(root: Path, rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """loss_type -> the loss record of one of its runs (every run of a loss shares its settings in a sweep)."""
    records: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["loss_type"] in records:
            continue
        for path in (root / str(row["run_dir"]) / SUMMARY_FILE, summary_copy(root, str(row["run_dir"]))):
            if path.is_file():
                records[row["loss_type"]] = read_json(path)["loss"]
                break
    order = {loss: i for i, loss in enumerate(loss_types())}
    return dict(sorted(records.items(), key=lambda item: order.get(item[0], len(order))))


def _card_metadata(tasks: Sequence[str]) -> CardMetadata:
    """The families' metadata over ``tasks``, merged: every tag and data set; the pipeline and the language when
    the families agree on one."""
    by_family: dict[str, list[str]] = {}
    for task in tasks:
        by_family.setdefault(family_of(task).name, []).append(task)
    parts = [family_of(members[0]).card_metadata(members) for members in by_family.values()]
    pipelines = {p.pipeline_tag for p in parts}
    languages = {p.language for p in parts if p.language}
    return CardMetadata(
        tags=tuple(t for p in parts for t in p.tags),
        datasets=tuple(d for p in parts for d in p.datasets),
        pipeline_tag=pipelines.pop() if len(pipelines) == 1 else None,
        language=languages.pop() if len(languages) == 1 else None,
    )


def render_sweep_card(root: str | os.PathLike, *, base_model: str | None = None) -> str:
    """The card of a sweep folder or of its report folder."""
    from huggingface_hub import ModelCardData

    root = Path(root)
    rows, spec, status = _rows_and_context(root)
    summary = summarise(rows)
    records = _loss_records(root, rows)
    missing = sorted({r["loss_type"] for r in rows} - set(records))
    if missing:
        raise ValueError(f"{root}: no run summary gives the settings of {missing}")
    configs = {t: LossConfig.from_dict(r) for t, r in records.items()}
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    noise_rates = sorted({float(r["noise_rate"]) for r in rows})
    seeds = sorted({int(r["seed"]) for r in rows})
    source = spec.get("model_name_or_path")
    base = base_model or spec.get("base_model_id")
    if base is None and source and not Path(str(source)).exists():
        base = source
    noisy = any(noise_rates)
    families = _card_metadata(tasks)
    tags = ["hf-squareloss", "loss-comparison", *configs, *families.tags]
    if noisy:
        tags.append("label-noise")
    meta = ModelCardData(
        base_model=base,
        datasets=list(families.datasets) or None,
        language=families.language,
        library_name="transformers",
        pipeline_tag=families.pipeline_tag,
        tags=list(dict.fromkeys(tags)),
        hf_squareloss={
            "kind": "loss comparison",
            "losses": [loss_block(r) for r in records.values()],
            "reference_loss": REFERENCE_LOSS,
            "label_noise": {"type": spec.get("noise_type"), "rates": noise_rates} if noisy else None,
            "seeds": seeds,
            "tasks": tasks,
            "protocols": protocols,
        },
        ignore_metadata_errors=False,
    ).to_dict()

    model_name = Path(str(base or source or "model")).name
    parts = [
        front_matter(meta),
        f"# Loss comparison on {describe_tasks(tasks)}: {', '.join(configs)} ({model_name})\n",
    ]
    parts.append(
        f"{len(rows)} runs of `{model_name}` made with "
        "[hf-squareloss](https://github.com/hf-squareloss/hf-squareloss) `compare`: every loss on the same data, "
        f"seeds {', '.join(map(str, seeds))}, label-noise rates {', '.join(fmt(r) for r in noise_rates)} (training "
        "labels only; validation "
        f"labels are clean). Numbers are {SCORED_SENTENCE}, in %, mean ± sample standard deviation over "
        f"seeds; Δ is the difference to `{REFERENCE_LOSS}` under the same protocol, in the same column. No "
        "single model is attached to this card: it documents the comparison.\n"
    )
    sessions = sessions_lines(status)
    if sessions:
        parts.append("\n".join(sessions))
    parts.append("## Losses\n")
    for loss_type, config in configs.items():
        params = ", ".join(f"{k} = {fmt(v)}" for k, v in config.params.items()) or "no parameters"
        parts.append(f"- `{loss_type}`: {config.spec.title}, {params}. {config.spec.formula}.")
    parts.append("")
    parts.append("## Results\n")
    for task in tasks:
        for protocol in protocols:
            parts += task_tables(summary, task, protocol)
    paper = paper_table(summary)
    if paper:
        parts.append("## Beside Hui & Belkin (ICLR 2021)\n")
        parts.append(
            f"Their BERT fine-tuning numbers (full tasks, mean of {HUI_BELKIN_SEEDS} seeds, clean labels, as "
            "published; not comparable in scale with these runs) and ours at noise 0 with early stopping.\n"
        )
        parts.append("\n".join(paper) + "\n")
    calibration = calibration_table(summary)
    if calibration:
        parts.append("## Calibration\n")
        parts.append("\n".join(calibration) + "\n")
    epochs = epochs_table(summary)
    if epochs:
        parts.append("## Epochs\n")
        parts.append("\n".join(epochs) + "\n")
    plots = sorted(p.name for p in root.glob("*.png"))
    if plots:
        parts.append("## Plots\n")
        parts += [f"![{p.removesuffix('.png').replace('_', ' ')}]({p})\n" for p in plots]
    parts.append("## Per seed\n")
    parts.append(per_seed_table(rows) + "\n")
    references = [key for config in configs.values() for key in config.spec.references]
    if paper:
        references.append("hui2021evaluation")
    if references:
        parts.append("## Citation\n")
        parts.append(citation_section(references))
    text = "\n".join(parts)
    validate_card(text)
    return text


def write_sweep_card(
    root: str | os.PathLike, *, base_model: str | None = None, name: str | None = None
) -> Path:
    """Write the card of a sweep (or report) folder as ``README.md`` (or ``name``) in it; return its path."""
    text = render_sweep_card(root, base_model=base_model)
    return save_card(root, text, **({"name": name} if name else {}))
