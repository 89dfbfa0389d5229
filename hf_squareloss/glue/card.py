"""The model card of a finished GLUE recipe run, from its output folder alone.

It is the Trainer's card (:mod:`hf_squareloss.model_card`) with what the folder knows besides: the GLUE task and
where its data came from, the label noise actually realised, the protocol, the per-epoch history and every training
argument that matters for reproducing the run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..model_card import HYPERPARAMETERS, ModelCardInfo, card_metrics, fmt, render_model_card, save_card
from ..runs.folder import DATASET_FILE, LABEL_NOISE_FILE, RUN_ARGS_FILE, read_json, read_summary
from .tasks import get_task

__all__ = ["card_info_from_run", "write_run_card"]


def _optional(path: Path) -> Any:
    return read_json(path) if path.is_file() else None


def _dataset_note(dataset: dict[str, Any], summary: dict[str, Any]) -> str | None:
    note = None
    origin = dataset.get("origin") or summary.get("data_origin")
    if origin and origin != "hub":
        files = dataset.get("files") or {}
        listed = ", ".join(
            f"{split}: `{Path(str(f.get('path', f) if isinstance(f, dict) else f)).name}`"
            + (
                f" (sha256 `{f['sha256'][:12]}...`, {f['rows']} rows)"
                if isinstance(f, dict) and "sha256" in f
                else ""
            )
            for split, f in files.items()
        )
        note = (
            f"Read from GLUE's original TSV files ({listed or dataset.get('data_dir') or 'local files'}) "
            "instead of the Hub copy."
        )
    if summary.get("max_train_samples"):
        note = (note + " " if note else "") + (
            f"Training used the first {summary['num_train_examples']} training examples."
        )
    return note


def card_info_from_run(run_dir: str | os.PathLike, *, base_model: str | None = None) -> ModelCardInfo:
    """The card of a finished GLUE recipe run, from its output folder alone.

    ``base_model`` names the Hub id of the model the run started from; by default the recipe's
    ``base_model_id`` argument, else its ``model_name_or_path`` when that is not a local folder.
    """
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    run_args = _optional(run_dir / RUN_ARGS_FILE) or {}
    dataset = _optional(run_dir / DATASET_FILE) or {}
    noise = _optional(run_dir / LABEL_NOISE_FILE) or summary.get("label_noise")
    if noise:
        noise = {k: v for k, v in noise.items() if k not in ("flipped_indices", "flipped_idx")}
    task = get_task(summary["task"])
    model_args = run_args.get("model", {})
    training = run_args.get("training", {})
    source = summary.get("model_name_or_path") or model_args.get("model_name_or_path")
    base = base_model or model_args.get("base_model_id")
    note = None
    if base is None and source and not Path(source).exists():
        base = source
    elif base is None and source:
        note = (
            f"The run started from a local copy of its base model (`{Path(source).name}`); its Hub id was not "
            "given (`--base_model_id`)."
        )
    hyper = {k: training[k] for k in HYPERPARAMETERS if training.get(k) not in (None, "", [])}
    data_args = run_args.get("data", {})
    if data_args.get("max_seq_length"):
        hyper["max_seq_length"] = data_args["max_seq_length"]
    if summary.get("epochs_trained") is not None:
        hyper["epochs trained"] = summary["epochs_trained"]
    if summary.get("model_epoch") is not None:
        hyper["epoch of the saved model"] = summary["model_epoch"]
    loss_type = summary["loss"]["loss_type"]
    hub_id = training.get("hub_model_id")
    name = hub_id or "-".join(
        p
        for p in (
            Path(str(base or source or "model")).name,
            "glue",
            task.name,
            loss_type,
            f"noise{fmt(float(noise['rate']))}" if noise else None,
            f"seed{summary.get('seed')}",
        )
        if p
    )
    splits = list(dataset.get("eval_splits") or task.eval_splits)
    return ModelCardInfo(
        model_name=Path(name).name,
        model_id=hub_id if hub_id and "/" in hub_id else None,
        loss=summary["loss"],
        base_model=base,
        base_model_note=note,
        dataset_id="nyu-mll/glue",
        dataset_name=f"GLUE {task.folder}",
        dataset_config=task.name,
        dataset_note=_dataset_note(dataset, summary),
        task_type="text-classification",
        metrics=card_metrics(
            summary.get("eval_metrics", {}),
            splits[0] if splits else "validation",
            loss_type,
            mismatched_split=splits[1] if len(splits) > 1 else None,
        ),
        label_noise=noise or None,
        hyperparameters=hyper,
        protocol=summary.get("protocol"),
        history=summary.get("history", ()),
        label_names=list(task.label_names or ()),
        extra_tags=["text-classification", "glue", task.name],
        versions=summary.get("versions", {}),
    )


def write_run_card(run_dir: str | os.PathLike, *, base_model: str | None = None) -> Path:
    """Write ``README.md`` (the model card) into a finished GLUE run folder; return its path."""
    return save_card(run_dir, render_model_card(card_info_from_run(run_dir, base_model=base_model)))
