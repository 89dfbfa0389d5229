"""What a run records about itself: its arguments (``run_args.json``), its summary (``run_summary.json``), and the
check that an interrupted run is resumed with its own settings."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from ..registry import loss_fields
from ..training_args import SquareLossTrainingArguments
from .convergence import judge
from .folder import RUN_ARGS_FILE, best_eval_entry, read_json
from .protocol import LABEL_NOISE_KEYS

__all__ = [
    "PROTOCOL_RESUME_KEYS",
    "TRAINING_RESUME_KEYS",
    "RunTask",
    "check_resumable",
    "resume_keys",
    "run_args_record",
    "run_summary",
]

PROTOCOL_RESUME_KEYS = ("protocol", "early_stopping_patience", "reference_run", "reference_epochs")
"""The protocol settings (``run_args.json`` section ``protocol``) a resumed run must share with the interrupted one."""
TRAINING_RESUME_KEYS = (
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
)
"""The training settings a resumed run must share; the loss settings (``loss_type`` and every loss field of the
registry) are added by :func:`check_resumable`. Anything else may change (logging, say)."""


def resume_keys(
    *,
    model: tuple[str, ...],
    data: tuple[str, ...],
    protocol: tuple[str, ...] = (),
    training: tuple[str, ...] = (),
) -> dict[str, tuple[str, ...]]:
    """The settings, per section of ``run_args.json``, that a resumed run of a recipe must share with the interrupted
    one: the recipe's ``model`` and ``data`` keys, the label noise, the shared protocol and training keys, and the
    recipe's own ``protocol`` and ``training`` keys."""
    return {
        "model": model,
        "data": data,
        "label_noise": LABEL_NOISE_KEYS,
        "protocol": (*PROTOCOL_RESUME_KEYS, *protocol),
        "training": (*TRAINING_RESUME_KEYS, *training),
    }


class RunTask(Protocol):
    """What the records need to know about the task of a run (a GLUE task, an image task...)."""

    @property
    def name(self) -> str: ...

    @property
    def main_metric(self) -> str: ...


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
    model_args: Any,
    data_args: Any,
    noise_args: Any,
    protocol_args: Any,
    training_args: SquareLossTrainingArguments,
    protocol_record: dict[str, Any],
) -> dict[str, Any]:
    """What ``run_args.json`` holds: the command line (tokens redacted), the version, and every argument group."""
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
    output_dir: Path, new_args: dict[str, Any], resume_keys: Mapping[str, tuple[str, ...]]
) -> None:
    """Refuse to continue an interrupted run in ``output_dir`` with different settings (``resume_keys``: the
    recipe's settings per section of ``run_args.json`` that must match). The loss settings, ``loss_type`` and every
    loss field of the registry, are always part of the ``training`` section."""
    path = output_dir / RUN_ARGS_FILE
    if not path.is_file():
        return
    old = read_json(path)
    sections = dict(resume_keys)
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


def _epochs(
    task: RunTask,
    trainer: Any,
    training_args: SquareLossTrainingArguments,
    protocol: dict[str, Any],
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    """The summary's epochs: run, of the best evaluation (and its metric), of the kept model; stopped early? had it
    converged (:mod:`.convergence`)?"""
    metric = protocol.get("metric_for_best_model") or task.main_metric
    greater = bool(protocol.get("greater_is_better", True))
    best = best_eval_entry(history, metric, greater)
    epochs_trained = float(trainer.state.epoch) if training_args.do_train and trainer.state.epoch else None
    if training_args.load_best_model_at_end and best is not None:
        model_epoch = best["epoch"]
    else:
        model_epoch = epochs_trained
    stopped_early = bool(
        protocol["name"] != "fixed_epochs"
        and epochs_trained is not None
        and epochs_trained < float(training_args.num_train_epochs) - 1e-6
    )
    convergence = (
        judge(history, metric, greater_is_better=greater, epochs=epochs_trained, stopped_early=stopped_early)
        if training_args.do_train
        else None
    )
    return {
        "epochs_trained": epochs_trained,
        "best_epoch": best["epoch"] if best else None,
        "best_metric": {metric: best.get(metric if metric.startswith("eval_") else f"eval_{metric}")}
        if best
        else None,
        "model_epoch": model_epoch,
        "stopped_early": stopped_early,
        "converged": convergence.converged if convergence else None,
        "convergence": convergence.to_dict() if convergence else None,
    }


def _served_loss_record(trainer: Any) -> dict[str, Any]:
    """The trained loss's record, with the temperature the model serves with when one was fitted (as the saved
    ``config.hf_squareloss`` holds it), so that the run's card says the model is calibrated."""
    from ..scores import TEMPERATURE_KEY, temperature_of

    record = trainer.loss_record()
    temperature = temperature_of(trainer.accelerator.unwrap_model(trainer.model))
    return record if temperature is None else {**record, TEMPERATURE_KEY: temperature}


def run_summary(
    task: RunTask,
    trainer: Any,
    training_args: SquareLossTrainingArguments,
    protocol: dict[str, Any],
    noise_record: dict[str, Any] | None,
    dataset_record: dict[str, Any],
    history: list[dict[str, Any]],
    train_metrics: dict[str, Any],
    eval_metrics: dict[str, Any],
    *,
    model_name: str | None,
    max_train_samples: int | None,
    started: float,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What ``run_summary.json`` holds: the headline numbers, the protocol, the per-epoch history, the versions.

    ``model_name``: the model the run started from (a path, a Hub id or an architecture trained from scratch).
    """
    epochs = _epochs(task, trainer, training_args, protocol, history)
    noise = None
    if noise_record is not None:
        noise = {k: v for k, v in noise_record.items() if k not in ("flipped_indices", "flipped_idx")}
    return {
        "task": task.name,
        "model_name_or_path": model_name,
        "output_dir": str(Path(training_args.output_dir).resolve()),
        "data_origin": dataset_record.get("origin"),
        "max_train_samples": max_train_samples,
        "num_train_examples": dataset_record["splits_used"].get("train"),
        "num_eval_examples": {s: dataset_record["splits_used"][s] for s in dataset_record["eval_splits"]},
        "loss": _served_loss_record(trainer),
        "calibration": calibration,
        "loss_description": trainer.loss_function.config.describe(),
        "protocol": protocol,
        "seed": training_args.seed,
        "label_noise": noise,
        "did_train": bool(training_args.do_train),
        "num_train_epochs": float(training_args.num_train_epochs),
        **epochs,
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
