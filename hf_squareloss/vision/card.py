"""The model card of a finished image-classification run, from its output folder alone."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..model_card import (
    HYPERPARAMETERS,
    CardMetric,
    ModelCardInfo,
    calibrated_note,
    render_model_card,
    save_card,
)
from ..registry import LossConfig
from .arguments import TASK_PREFIX

__all__ = ["image_card_info", "write_image_run_card"]

_SPLITS = {"eval_": "validation", "test_": "test"}


def _read(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _how_to_read(loss: dict[str, Any]) -> str:
    config = LossConfig.from_dict(loss)
    if config.spec.outputs == "scores":
        reading = (
            "Trained with the square loss on raw logits: the outputs are **scores**, not log-probabilities (the "
            f"true class was trained towards M = {config.params.get('M', 1.0):g}, the others towards 0). Predict "
            "with argmax; a softmax of them is not a probability."
        )
    else:
        reading = (
            f"Trained with {config.spec.title} on softmax probabilities: a softmax of the logits gives class "
            "probabilities."
        )
    return (
        reading + "\n\n```python\nfrom transformers import AutoModelForImageClassification\nimport "
        "hf_squareloss.vision  # registers the CIFAR ResNet\n\nmodel = AutoModelForImageClassification."
        'from_pretrained("<this model>")\npredicted = model(pixel_values).logits.argmax(-1)\n```\n\n'
        "`pixel_values` are prepared as in training (no image processor is saved): resized to the image size "
        "below, scaled to [0, 1], then normalised per channel with the image mean and std below."
        + (f"\n\n{note}" if (note := calibrated_note(loss)) is not None else "")
    )


def image_card_info(run_dir: str | Path, *, base_model: str | None = None) -> ModelCardInfo:
    """The card of a finished image run, from its output folder alone."""
    run_dir = Path(run_dir)
    summary = _read(run_dir / "run_summary.json")
    run_args = _read(run_dir / "run_args.json") if (run_dir / "run_args.json").is_file() else {}
    dataset = _read(run_dir / "dataset.json") if (run_dir / "dataset.json").is_file() else {}
    noise_path = run_dir / "label_noise.json"
    noise = None
    if noise_path.is_file():
        noise = {k: v for k, v in _read(noise_path).items() if k not in ("flipped_indices", "flipped_idx")}
    model_args, training = run_args.get("model", {}), run_args.get("training", {})
    loss_type = summary["loss"]["loss_type"]
    metrics = []
    for key, value in {**summary.get("eval_metrics", {}), **summary.get("test_metrics", {})}.items():
        prefix = key[:5] if key.startswith("test_") else key[:5] if key.startswith("eval_") else None
        name = key[len(prefix) :] if prefix else None
        if (
            name not in ("accuracy", "loss")
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            continue
        pretty = "Accuracy" if name == "accuracy" else f"Loss ({loss_type})"
        metrics.append(CardMetric(key=key, type=name, name=pretty, value=float(value), split=_SPLITS[prefix]))
    hyper = {
        k: training[k] for k in (*HYPERPARAMETERS, "optim_args") if training.get(k) not in (None, "", [])
    }
    images = dataset.get("images", {})
    hyper.update({f"image {k}": v for k, v in images.items() if v is not None})
    for key, label in (("epochs_trained", "epochs trained"), ("model_epoch", "epoch of the saved model")):
        if summary.get(key) is not None:
            hyper[label] = summary[key]
    schedule = (summary.get("protocol") or {}).get("lr_schedule")
    if schedule:
        hyper["learning-rate milestones (epochs)"] = schedule["milestones"]
        hyper["learning-rate factor at each milestone"] = schedule["decay"]
    base = base_model or model_args.get("base_model_id")
    source = model_args.get("model_name_or_path")
    note = None
    if model_args.get("model_type"):
        note = f"Trained from scratch: a CIFAR {model_args['model_type']} of He et al. (2016)."
    elif base is None and source and not Path(source).exists():
        base = source
    hub_id = dataset.get("dataset") if dataset.get("origin") == "hub" else None
    task = summary["task"]
    name = training.get("hub_model_id") or "-".join(
        p
        for p in (
            model_args.get("model_type") or Path(str(base or source or "model")).name,
            task.removeprefix(TASK_PREFIX),
            loss_type,
            f"noise{noise['rate']:g}" if noise else None,
            f"seed{summary.get('seed')}",
        )
        if p
    )
    return ModelCardInfo(
        model_name=Path(name).name,
        loss=summary["loss"],
        base_model=base,
        base_model_note=note,
        dataset_id=hub_id,
        dataset_name=task.removeprefix(TASK_PREFIX),
        dataset_config=dataset.get("config"),
        dataset_note=None if hub_id else f"Local images ({dataset.get('origin', 'unknown origin')}).",
        task_type="image-classification",
        metrics=metrics,
        label_noise=noise or summary.get("label_noise"),
        hyperparameters=hyper,
        protocol=summary.get("protocol"),
        history=summary.get("history", ()),
        label_names=list(dataset.get("label_names") or ()),
        extra_tags=["image-classification", task.replace(":", "-")],
        language=None,
        versions=summary.get("versions", {}),
        how_to_read=_how_to_read(summary["loss"]),
    )


def write_image_run_card(run_dir: str | Path, *, base_model: str | None = None) -> Path:
    """Write ``README.md`` (the model card) into a finished image run folder; return its path."""
    return save_card(run_dir, render_model_card(image_card_info(run_dir, base_model=base_model)))
