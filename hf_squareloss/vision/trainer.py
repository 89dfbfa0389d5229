"""``ImageTrainer``: :class:`~hf_squareloss.SquareLossTrainer` with the TCE paper's step-decay learning rate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..trainer import SquareLossTrainer
from .protocol import multistep_scheduler, steps_per_epoch

__all__ = ["ImageTrainer"]


class ImageTrainer(SquareLossTrainer):
    """With ``lr_milestones`` (epochs), the learning rate is multiplied by ``lr_decay`` at each milestone, on top of
    ``lr_scheduler_type`` (``constant`` under ``--protocol tce_paper``). Without, the Trainer's own schedule."""

    def __init__(
        self, *args: Any, lr_milestones: Sequence[float] | None = None, lr_decay: float = 0.1, **kwargs: Any
    ) -> None:
        self.lr_milestones = tuple(float(m) for m in lr_milestones) if lr_milestones else None
        self.lr_decay = float(lr_decay)
        super().__init__(*args, **kwargs)

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
        if self.lr_milestones is None:
            return super().create_scheduler(num_training_steps, optimizer)
        if self.lr_scheduler is None:
            per_epoch = steps_per_epoch(num_training_steps, float(self.args.num_train_epochs))
            self.lr_scheduler = multistep_scheduler(
                optimizer if optimizer is not None else self.optimizer,
                per_epoch,
                self.lr_milestones,
                self.lr_decay,
            )
            self._created_lr_scheduler = True
        return self.lr_scheduler
