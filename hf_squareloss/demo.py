"""The demo job: losses compared on scikit-learn's bundled 8x8 digits, clean and with label noise.

By default ``ce``, ``square`` and ``tce`` (about two minutes on two cores); ``losses=("all",)`` (``--losses all``)
runs every registered loss.

Everything is offline and real: the 1,797 handwritten digits that ship with scikit-learn, a small
``ViTForImageClassification`` built from a config and trained from scratch with :class:`SquareLossTrainer`, the
training labels optionally corrupted with symmetric noise (the test labels never are). It prints a table of test
accuracy (mean +- std over seeds) and one of calibration, and writes ``results.json``, ``results.md``,
``results.png`` (accuracy) and ``calibration.png``.

Calibration is measured on the probabilities each model serves (:mod:`hf_squareloss.calibration`): ECE (top label,
15 bins), NLL and Brier score, *before* temperature scaling (``T = 1``: softmax of the logits, or of ``logits / M``
for the square loss) and *after* it. The demo has no validation split, so *after* is cross-fitted on the test set:
each half of it is scored with the temperature fitted on the other half.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from .calibration import cross_fitted_metrics, served_calibration_metrics
from .noise import corrupt_labels
from .registry import select_losses

__all__ = ["DemoConfig", "load_digits_splits", "run_demo"]

_CAL = ("ece", "nll", "brier")


@dataclass
class DemoConfig:
    losses: Sequence[str] = ("ce", "square", "tce")
    noise_rates: Sequence[float] = (0.0, 0.4)
    seeds: Sequence[int] = (0, 1)
    epochs: float = 40
    batch_size: int = 64
    learning_rate: float = 2e-3
    hidden_size: int = 48
    num_layers: int = 1
    test_fraction: float = 0.3
    max_train_samples: int | None = None
    output_dir: str = "demo_output"
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        self.losses = tuple(select_losses(self.losses))  # "all": every registered loss
        for rate in self.noise_rates:
            if not 0.0 <= rate < 0.9:
                raise ValueError(f"noise rates must be in [0, 0.9), got {rate}")
        if not self.seeds:
            raise ValueError("at least one seed is needed")
        if self.epochs <= 0 or self.batch_size <= 0 or self.learning_rate <= 0:
            raise ValueError("epochs, batch_size and learning_rate must be > 0")


def load_digits_splits(test_fraction: float = 0.3, split_seed: int = 0):
    """scikit-learn's 8x8 digits as ``(x_train, y_train, x_test, y_test)``, stratified, pixels scaled to [-1, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0 - 0.5) / 0.5
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=split_seed, stratify=y
    )
    return x_tr[:, None], y_tr, x_te[:, None], y_te


class _Images(torch.utils.data.Dataset):
    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x = torch.from_numpy(x)
        self.y = torch.from_numpy(y)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.x[i], "labels": self.y[i]}


def _model(cfg: DemoConfig, seed: int):
    from transformers import ViTConfig, ViTForImageClassification, set_seed

    set_seed(seed)
    config = ViTConfig(
        image_size=8,
        patch_size=2,
        num_channels=1,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=4,
        intermediate_size=2 * cfg.hidden_size,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=10,
        id2label={i: str(i) for i in range(10)},
        label2id={str(i): i for i in range(10)},
    )
    return ViTForImageClassification(config)


def run_one(loss_type: str, noise_rate: float, seed: int, cfg: DemoConfig, data) -> dict[str, Any]:
    """Train one model and return its test accuracy and the realised noise rate."""
    from transformers import PrinterCallback

    from .trainer import SquareLossTrainer
    from .training_args import SquareLossTrainingArguments

    x_tr, y_tr, x_te, y_te = data
    if cfg.max_train_samples:
        x_tr, y_tr = x_tr[: cfg.max_train_samples], y_tr[: cfg.max_train_samples]
    noisy, report = corrupt_labels(y_tr, 10, noise_rate, noise_type="symmetric", seed=10_000 + seed)
    with tempfile.TemporaryDirectory() as tmp:
        args = SquareLossTrainingArguments(
            output_dir=tmp,
            loss_type=loss_type,
            num_train_epochs=cfg.epochs,
            per_device_train_batch_size=cfg.batch_size,
            per_device_eval_batch_size=512,
            learning_rate=cfg.learning_rate,
            weight_decay=0.01,
            lr_scheduler_type="cosine",
            warmup_steps=0.05,
            seed=seed,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=True,
            dataloader_num_workers=0,
        )
        trainer = SquareLossTrainer(model=_model(cfg, seed), args=args, train_dataset=_Images(x_tr, noisy))
        trainer.remove_callback(PrinterCallback)  # this job prints its own progress
        start = time.perf_counter()
        train_out = trainer.train()
        seconds = time.perf_counter() - start
        logits = trainer.predict(_Images(x_te, y_te)).predictions
    accuracy = float((np.asarray(logits).argmax(-1) == y_te).mean())
    loss = trainer.loss_function.config
    before = served_calibration_metrics(logits, y_te, loss, temperature=1.0)
    after, fits = cross_fitted_metrics(logits, y_te, loss, folds=2, seed=seed)
    calibration = {
        f"{name}_{stage}": m[name] for stage, m in (("before", before), ("after", after)) for name in _CAL
    }
    return {
        "loss_type": loss_type,
        "loss": trainer.loss_function.config.describe(),
        "noise_rate": noise_rate,
        "realised_noise_rate": report.realised_rate,
        "seed": seed,
        "test_accuracy": accuracy,
        "train_loss": float(train_out.training_loss),
        "train_seconds": seconds,
        "num_train": len(y_tr),
        "num_test": len(y_te),
        **calibration,
        "temperature_folds": [fit.temperature for fit in fits],
        "temperature_status": [fit.status for fit in fits],
    }


def _summarise(runs: list[dict[str, Any]], cfg: DemoConfig) -> list[dict[str, Any]]:
    rows = []
    for rate in cfg.noise_rates:
        for loss in cfg.losses:
            accs = [r["test_accuracy"] for r in runs if r["loss_type"] == loss and r["noise_rate"] == rate]
            noise = [
                r["realised_noise_rate"] for r in runs if r["loss_type"] == loss and r["noise_rate"] == rate
            ]
            if not accs:
                continue
            members = [r for r in runs if r["loss_type"] == loss and r["noise_rate"] == rate]
            calibration = {}
            for name in (f"{m}_{stage}" for m in _CAL for stage in ("before", "after")):
                values = [r[name] for r in members]
                calibration[f"{name}_mean"] = statistics.fmean(values)
                calibration[f"{name}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            rows.append(
                {
                    "loss_type": loss,
                    "noise_rate": rate,
                    "n_seeds": len(accs),
                    "accuracy_mean": statistics.fmean(accs),
                    "accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                    "realised_noise_rate_mean": statistics.fmean(noise),
                    "per_seed": accs,
                    **calibration,
                }
            )
    return rows


def format_table(rows: list[dict[str, Any]], cfg: DemoConfig) -> str:
    """Markdown table: one row per loss, one column per noise rate, test accuracy % mean +- std."""
    header = (
        "| loss | "
        + " | ".join(f"noise {rate:.0%} (realised {_realised(rows, rate):.1%})" for rate in cfg.noise_rates)
        + " |"
    )
    lines = [header, "|" + "---|" * (len(cfg.noise_rates) + 1)]
    for loss in cfg.losses:
        cells = []
        for rate in cfg.noise_rates:
            row = next((r for r in rows if r["loss_type"] == loss and r["noise_rate"] == rate), None)
            cells.append(
                "-" if row is None else f"{100 * row['accuracy_mean']:.2f} ± {100 * row['accuracy_std']:.2f}"
            )
        lines.append(f"| {loss} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_calibration_table(rows: list[dict[str, Any]], cfg: DemoConfig) -> str:
    """Markdown table: per loss and noise rate, ECE (%) and NLL before -> after temperature scaling, mean +- std."""
    lines = [
        "| loss | noise | ECE before (%) | ECE after (%) | NLL before | NLL after | Brier before | Brier after |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(row: dict[str, Any], name: str, scale: float, digits: int) -> str:
        return f"{scale * row[name + '_mean']:.{digits}f} ± {scale * row[name + '_std']:.{digits}f}"

    for rate in cfg.noise_rates:
        for loss in cfg.losses:
            row = next((r for r in rows if r["loss_type"] == loss and r["noise_rate"] == rate), None)
            if row is None:
                continue
            lines.append(
                f"| {loss} | {rate:.0%} | {cell(row, 'ece_before', 100, 2)} | {cell(row, 'ece_after', 100, 2)} | "
                f"{cell(row, 'nll_before', 1, 3)} | {cell(row, 'nll_after', 1, 3)} | "
                f"{cell(row, 'brier_before', 1, 3)} | {cell(row, 'brier_after', 1, 3)} |"
            )
    return "\n".join(lines)


def _plot_calibration(rows: list[dict[str, Any]], cfg: DemoConfig, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.0))
    width = 0.8 / (2 * len(cfg.losses))
    for ax, (name, scale, unit) in zip(
        axes, (("ece", 100.0, "ECE (%)"), ("nll", 1.0, "NLL (nats)")), strict=True
    ):
        for i, loss in enumerate(cfg.losses):
            for h, stage in enumerate(("before", "after")):
                xs, means, stds = [], [], []
                for j, rate in enumerate(cfg.noise_rates):
                    row = next((r for r in rows if r["loss_type"] == loss and r["noise_rate"] == rate), None)
                    if row:
                        xs.append(j + (2 * i + h - len(cfg.losses) + 0.5) * width)
                        means.append(scale * row[f"{name}_{stage}_mean"])
                        stds.append(scale * row[f"{name}_{stage}_std"])
                ax.bar(
                    xs,
                    means,
                    width,
                    yerr=stds,
                    capsize=2,
                    color=f"C{i}",
                    alpha=0.45 if stage == "before" else 1.0,
                    hatch="//" if stage == "before" else None,
                    label=f"{loss} {stage}",
                )
        ax.set_xticks(range(len(cfg.noise_rates)), [f"{r:.0%} symmetric noise" for r in cfg.noise_rates])
        ax.set_ylabel(f"{unit}, mean ± std over {len(cfg.seeds)} seeds")
        ax.set_title(f"test {unit}: before (hatched) / after temperature scaling", fontsize="small")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize="x-small", ncol=2)
    fig.suptitle(
        "8x8 digits, tiny ViT from scratch: calibration of the served probabilities", fontsize="medium"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _realised(rows: list[dict[str, Any]], rate: float) -> float:
    vals = [r["realised_noise_rate_mean"] for r in rows if r["noise_rate"] == rate]
    return statistics.fmean(vals) if vals else math.nan


def _plot(rows: list[dict[str, Any]], cfg: DemoConfig, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    width = 0.8 / len(cfg.losses)
    for i, loss in enumerate(cfg.losses):
        xs, means, stds = [], [], []
        for j, rate in enumerate(cfg.noise_rates):
            row = next((r for r in rows if r["loss_type"] == loss and r["noise_rate"] == rate), None)
            if row:
                xs.append(j + (i - (len(cfg.losses) - 1) / 2) * width)
                means.append(100 * row["accuracy_mean"])
                stds.append(100 * row["accuracy_std"])
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=loss)
    ax.set_xticks(range(len(cfg.noise_rates)), [f"{r:.0%} symmetric noise" for r in cfg.noise_rates])
    ax.set_ylabel(f"test accuracy (%), mean ± std over {len(cfg.seeds)} seeds")
    lows = [100 * r["accuracy_mean"] - 100 * r["accuracy_std"] for r in rows]
    ax.set_ylim(max(0.0, min(lows) - 5) if lows else 0, 100)
    ax.set_title("8x8 digits, tiny ViT from scratch")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(cfg: DemoConfig, progress: bool = True) -> dict[str, Any]:
    """Run every (noise rate, loss, seed) and write ``results.json``, ``results.md``, ``results.png`` and
    ``calibration.png``."""
    from transformers.utils import logging as hf_logging

    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    hf_logging.set_verbosity_error()
    # the demo prints its own line per run; the trainer's "trains with" line would repeat it for every run
    quiet = ("hf_squareloss", "hf_squareloss.trainer")
    saved = {name: logging.getLogger(name).level for name in quiet}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return _run_grid(cfg, progress)
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _run_grid(cfg: DemoConfig, progress: bool) -> dict[str, Any]:
    from tqdm.auto import tqdm

    os.makedirs(cfg.output_dir, exist_ok=True)
    data = load_digits_splits(cfg.test_fraction)
    grid = [(rate, loss, seed) for rate in cfg.noise_rates for loss in cfg.losses for seed in cfg.seeds]
    runs = []
    start = time.perf_counter()
    bar = tqdm(grid, desc="demo", unit="run", disable=not progress, dynamic_ncols=True)
    for rate, loss, seed in bar:
        bar.set_postfix_str(f"{loss} noise={rate:.0%} seed={seed}")
        run = run_one(loss, rate, seed, cfg, data)
        runs.append(run)
        bar.write(
            f"  {loss:>11s}  noise {rate:4.0%} (realised {run['realised_noise_rate']:.1%})  seed {seed}  "
            f"test accuracy {100 * run['test_accuracy']:.2f}%  ECE {100 * run['ece_before']:.1f}% -> "
            f"{100 * run['ece_after']:.1f}%  ({run['train_seconds']:.1f}s)"
        )
    rows = _summarise(runs, cfg)
    table = format_table(rows, cfg)
    calibration_table = format_calibration_table(rows, cfg)
    result = {
        "task": "scikit-learn digits (8x8), test accuracy",
        "config": asdict(cfg),
        "summary": rows,
        "runs": runs,
        "wall_seconds": time.perf_counter() - start,
        "torch_threads": torch.get_num_threads(),
    }
    with open(os.path.join(cfg.output_dir, "results.json"), "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    with open(os.path.join(cfg.output_dir, "results.md"), "w", encoding="utf-8") as fh:
        fh.write(
            f"# Demo: test accuracy (%) on scikit-learn digits, mean ± std over seeds {list(cfg.seeds)}\n\n"
        )
        fh.write(table + "\n")
        fh.write(
            "\n## Calibration of the served probabilities on the test set, mean ± std over seeds\n\n"
            "Before: `T = 1` (softmax of the logits; of `logits / M` for the square loss). After: temperature "
            "scaling cross-fitted on the test set (each half scored with the `T` fitted on the other half). "
            "ECE: top label, 15 equal-width bins.\n\n"
        )
        fh.write(calibration_table + "\n")
    _plot(rows, cfg, os.path.join(cfg.output_dir, "results.png"))
    _plot_calibration(rows, cfg, os.path.join(cfg.output_dir, "calibration.png"))
    if progress:
        print("\n" + table)
        print("\n" + calibration_table)
        print(
            f"\nwrote {cfg.output_dir}/results.json, results.md, results.png, calibration.png "
            f"({result['wall_seconds']:.0f}s)"
        )
    return result
