"""What a run records about itself: its arguments (``run_args.json``), its summary (``run_summary.json``), and the
check that an interrupted run is resumed with its own settings."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..registry import loss_fields
from ..training_args import SquareLossTrainingArguments
from .arguments import DataTrainingArguments, LabelNoiseArguments, ModelArguments, ProtocolArguments
from .outputs import RUN_ARGS_FILE, best_eval_entry, read_json
from .tasks import GlueTask

__all__ = ["check_resumable", "run_args_record", "run_summary"]

# settings a resumed run must share with the interrupted one (anything else may change, e.g. logging)
_RESUME_KEYS = {
    "model": ("model_name_or_path", "config_name", "tokenizer_name", "model_revision"),
    "data": (
        "task_name",
        "dataset_name",
        "data_dir",
        "max_seq_length",
        "pad_to_max_length",
        "max_train_samples",
    ),
    "label_noise": ("label_noise", "label_noise_type", "label_noise_exact", "noise_seed"),
    "protocol": ("protocol", "early_stopping_patience", "reference_run", "reference_epochs"),
    # plus the loss: "loss_type" and every loss field of the registry (see check_resumable)
    "training": (
        "label_smoothing_factor",
        "seed",
        "data_seed",
        "learning_rate",
        "num_train_epochs",
        "max_steps",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "lr_scheduler_type",
        "warmup_steps",
        "weight_decay",
        "max_grad_norm",
        "optim",
        "bf16",
        "fp16",
    ),
}


def _redacted(argv: Sequence[str]) -> list[str]:
    """``argv`` with the values of ``--*_token`` flags removed."""
    out: list[str] = []
    hide = False
    for arg in argv:
        if hide:
            out.append("<redacted>")
            hide = False
        elif arg.startswith("--") and arg.split("=", 1)[0].endswith("_token"):
            out.append(arg.split("=", 1)[0] + ("=<redacted>" if "=" in arg else ""))
            hide = "=" not in arg
        else:
            out.append(arg)
    return out


def _training_dict(training_args: SquareLossTrainingArguments) -> dict[str, Any]:
    """``training_args.to_dict()`` without any token (``hub_token`` and the like)."""
    return {k: v for k, v in training_args.to_dict().items() if not k.endswith("_token")}


def run_args_record(
    argv: Sequence[str] | None,
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    noise_args: LabelNoiseArguments,
    protocol_args: ProtocolArguments,
    training_args: SquareLossTrainingArguments,
    protocol_record: dict[str, Any],
) -> dict[str, Any]:
    from .. import __version__

    return {
        "argv": _redacted(sys.argv[1:] if argv is None else argv),
        "hf_squareloss_version": __version__,
        "model": dataclasses.asdict(model_args),
        "data": dataclasses.asdict(data_args),
        "label_noise": dataclasses.asdict(noise_args),
        "protocol": {**dataclasses.asdict(protocol_args), "resolved": protocol_record},
        "training": _training_dict(training_args),
    }


def check_resumable(
    output_dir: Path, new_args: dict[str, Any], resume_keys: dict[str, tuple[str, ...]] | None = None
) -> None:
    """Refuse to continue an interrupted run in ``output_dir`` with different settings (``resume_keys``: the
    settings per section of ``run_args.json`` that must match; default: the GLUE recipe's). The loss settings,
    ``loss_type`` and every loss field of the registry, are always part of the ``training`` section."""
    path = output_dir / RUN_ARGS_FILE
    if not path.is_file():
        return
    old = read_json(path)
    sections = dict(resume_keys or _RESUME_KEYS)
    # the loss settings come from the registry, so a loss added there is checked too
    sections["training"] = ("loss_type", *loss_fields(), *sections.get("training", ()))
    changed = [
        f"{section}.{key}: {old.get(section, {}).get(key)!r} -> {new_args[section].get(key)!r}"
        for section, keys in sections.items()
        for key in dict.fromkeys(keys)
        if old.get(section, {}).get(key) != new_args[section].get(key)
    ]
    if changed:
        raise ValueError(
            f"{output_dir} holds an interrupted run with other settings ({'; '.join(changed)}). Resume it with "
            "its own settings, or use another --output_dir."
        )


def _versions() -> dict[str, str]:
    import datasets
    import torch
    import transformers

    from .. import __version__

    return {
        "hf_squareloss": __version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "datasets": datasets.__version__,
    }


def run_summary(
    task: GlueTask,
    trainer: Any,
    training_args: SquareLossTrainingArguments,
    protocol: dict[str, Any],
    noise_record: dict[str, Any] | None,
    dataset_record: dict[str, Any],
    history: list[dict[str, Any]],
    train_metrics: dict[str, Any],
    eval_metrics: dict[str, Any],
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    started: float,
    *,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    metric = protocol.get("metric_for_best_model") or task.main_metric
    greater = bool(protocol.get("greater_is_better", True))
    best = best_eval_entry(history, metric, greater)
    epochs_trained = float(trainer.state.epoch) if training_args.do_train and trainer.state.epoch else None
    if training_args.load_best_model_at_end and best is not None:
        model_epoch = best["epoch"]
    else:
        model_epoch = epochs_trained
    noise = None
    if noise_record is not None:
        noise = {k: v for k, v in noise_record.items() if k not in ("flipped_indices", "flipped_idx")}
    return {
        "task": task.name,
        "model_name_or_path": model_args.model_name_or_path,
        "output_dir": str(Path(training_args.output_dir).resolve()),
        "data_origin": dataset_record.get("origin"),
        "max_train_samples": data_args.max_train_samples,
        "num_train_examples": dataset_record["splits_used"].get("train"),
        "num_eval_examples": {s: dataset_record["splits_used"][s] for s in dataset_record["eval_splits"]},
        "loss": trainer.loss_record(),
        "calibration": calibration,
        "loss_description": trainer.loss_function.config.describe(),
        "protocol": protocol,
        "seed": training_args.seed,
        "label_noise": noise,
        "did_train": bool(training_args.do_train),
        "num_train_epochs": float(training_args.num_train_epochs),
        "epochs_trained": epochs_trained,
        "best_epoch": best["epoch"] if best else None,
        "best_metric": {metric: best.get(metric if metric.startswith("eval_") else f"eval_{metric}")}
        if best
        else None,
        "model_epoch": model_epoch,
        "stopped_early": bool(
            protocol["name"] != "fixed_epochs"
            and epochs_trained is not None
            and epochs_trained < float(training_args.num_train_epochs) - 1e-6
        ),
        "eval_metrics": {
            k: v for k, v in eval_metrics.items() if not k.endswith(("_runtime", "_per_second"))
        },
        "train_metrics": {
            k: v for k, v in train_metrics.items() if k in ("train_loss", "train_runtime", "train_samples")
        },
        "history": history,
        "wall_seconds": time.perf_counter() - started,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
    }
