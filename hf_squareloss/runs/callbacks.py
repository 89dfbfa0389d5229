"""Trainer callbacks of every recipe run: stopping at a given epoch, and one progress line per evaluation."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from .console import say

__all__ = ["EpochProgressCallback", "StopAtEpochCallback"]

_EPS = 1e-6


class StopAtEpochCallback(TrainerCallback):
    """Stop training at the end of epoch ``stop_epoch`` (that epoch is still evaluated and saved).

    The learning-rate schedule keeps the horizon of ``num_train_epochs``: only the number of epochs run changes.
    """

    def __init__(self, stop_epoch: int) -> None:
        if int(stop_epoch) != stop_epoch or stop_epoch < 1:
            raise ValueError(f"stop_epoch must be a whole number >= 1, got {stop_epoch}")
        self.stop_epoch = int(stop_epoch)

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        if state.epoch is not None and state.epoch >= self.stop_epoch - _EPS:
            control.should_training_stop = True
        return control


class EpochProgressCallback(TrainerCallback):
    """Print one line per evaluation (main process only): the epoch, the numbers, and the best so far."""

    def __init__(self, metric: str, greater_is_better: bool = True, label: str = "") -> None:
        self.key = metric if metric.startswith("eval_") else f"eval_{metric}"
        self.greater_is_better = greater_is_better
        self.label = label
        self.best: tuple[float, float] | None = None

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or not metrics:
            return
        epoch = float(state.epoch or 0.0)
        value = metrics.get(self.key)
        if value is not None and (
            self.best is None or (value > self.best[0] if self.greater_is_better else value < self.best[0])
        ):
            self.best = (float(value), epoch)
        numbers = " ".join(
            f"{k}={v:.4f}"
            for k, v in metrics.items()
            if k.startswith("eval_") and not k.endswith(("_runtime", "_per_second")) and isinstance(v, float)
        )
        best = f" | best {self.key}={self.best[0]:.4f} at epoch {self.best[1]:g}" if self.best else ""
        total = f"/{args.num_train_epochs:g}" if args.max_steps is None or args.max_steps <= 0 else ""
        say(f"{self.label}epoch {epoch:g}{total}: {numbers}{best}")
