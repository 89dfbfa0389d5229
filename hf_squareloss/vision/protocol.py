"""The TCE paper's image protocol (``--protocol tce_paper``), beside every recipe's protocols.

Martinez & Stiefelhagen (GCPR 2018) train ResNet-20 with SGD, learning rate 0.1, Nesterov momentum 0.9, weight decay
1e-4 and batch 128 for 256 epochs, divide the learning rate by 10 at epochs 128 and 192, augment CIFAR with 4-pixel
shifts and horizontal mirrors (digits with shifts only), normalise each channel, and test the model of the epoch with
the best validation error. :func:`configure_image_protocol` sets exactly that on the training arguments, except
what the command line sets itself (every setting can be overridden by its own flag). The other protocols
(``early_stopping``, ``same_epochs``, ``fixed_epochs``: Hui & Belkin's) come from
:func:`hf_squareloss.runs.protocol.configure_protocol`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from ..runs.protocol import ProtocolSetup, SameData, configure_protocol
from ..training_args import SquareLossTrainingArguments

__all__ = [
    "SAME_DATA",
    "TCE_PAPER_MILESTONES",
    "TCE_PAPER_SETTINGS",
    "EpochStepDecay",
    "configure_image_protocol",
    "multistep_scheduler",
]

logger = logging.getLogger(__name__)

TCE_PAPER_BATCH = 128
TCE_PAPER_SETTINGS: dict[str, Any] = {
    "learning_rate": 0.1,
    "optim": "sgd",
    "optim_args": "momentum=0.9,nesterov=True",
    "weight_decay": 1e-4,
    "num_train_epochs": 256.0,
    "warmup_steps": 0,
}
"""``TrainingArguments`` values of the TCE paper (the batch of 128 is split over processes and accumulation)."""
TCE_PAPER_MILESTONES = (128.0, 192.0)
TCE_PAPER_DECAY = 0.1
SAME_DATA = SameData(
    data_keys=(
        "task_name",
        "dataset_name",
        "max_train_samples",
        "dataset_config_name",
        "train_dir",
        "validation_size",
        "validation_split_seed",
        "image_size",
    )
)
"""The data settings a ``same_epochs`` reference must share with an image run."""


@dataclass
class EpochStepDecay:
    """Learning-rate factor at optimizer step ``step``: ``decay ** (number of milestones <= step / steps_per_epoch)``.

    A class rather than a closure so that ``LambdaLR.state_dict`` saves it with the checkpoint.
    """

    steps_per_epoch: float
    milestones: tuple[float, ...]
    decay: float

    def __call__(self, step: int) -> float:
        passed = sum(step >= round(m * self.steps_per_epoch) for m in self.milestones)
        return self.decay**passed


def multistep_scheduler(
    optimizer: Optimizer, steps_per_epoch: float, milestones: tuple[float, ...], decay: float
) -> LambdaLR:
    """Multiply the learning rate by ``decay`` at each milestone epoch (counted in optimizer steps)."""
    return LambdaLR(optimizer, EpochStepDecay(float(steps_per_epoch), tuple(milestones), float(decay)))


def _tce_paper(
    protocol_args: Any, training_args: SquareLossTrainingArguments, explicit: set[str]
) -> ProtocolSetup:
    if training_args.max_steps is not None and training_args.max_steps > 0:
        raise ValueError(
            "--protocol tce_paper counts epochs (milestones at 128 and 192 of 256); do not pass --max_steps"
        )
    overrides: dict[str, Any] = {k: v for k, v in TCE_PAPER_SETTINGS.items() if k not in explicit}
    epochs = overrides.get("num_train_epochs", training_args.num_train_epochs)
    if float(epochs) != int(epochs):
        raise ValueError(f"--protocol tce_paper needs a whole number of epochs, got {epochs}")
    world = max(int(training_args.world_size), 1)
    if "per_device_train_batch_size" not in explicit:
        accumulation = training_args.gradient_accumulation_steps
        per_device, remainder = divmod(TCE_PAPER_BATCH, world * accumulation)
        if remainder or per_device < 1:
            raise ValueError(
                f"the TCE paper's batch of {TCE_PAPER_BATCH} does not split over {world} process(es) x "
                f"{accumulation} accumulation step(s); pass --per_device_train_batch_size"
            )
        overrides["per_device_train_batch_size"] = per_device
    own_schedule = "lr_scheduler_type" in explicit and protocol_args.lr_milestones is None
    milestones = tuple(protocol_args.lr_milestones or TCE_PAPER_MILESTONES)
    decay = TCE_PAPER_DECAY if protocol_args.lr_decay is None else protocol_args.lr_decay
    if not own_schedule:
        overrides["lr_scheduler_type"] = (
            "constant"  # the milestone factor is applied on top (multistep_scheduler)
        )
        if any(m >= float(epochs) for m in milestones):
            logger.warning(
                "tce_paper: learning-rate milestones %s at or after the last epoch %g", milestones, epochs
            )
    overrides.update(eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True)
    if "metric_for_best_model" not in explicit:
        overrides.update(metric_for_best_model="accuracy", greater_is_better=True)
    if training_args.save_total_limit is None:
        overrides["save_total_limit"] = 1  # the Trainer keeps the best checkpoint besides the last one
    overrides["restore_callback_states_from_checkpoint"] = True
    new_args = dataclasses.replace(training_args, **overrides)
    record: dict[str, Any] = {
        "name": "tce_paper",
        "lr_schedule": None if own_schedule else {"milestones": list(milestones), "decay": decay},
        "batch_size": new_args.per_device_train_batch_size * world * new_args.gradient_accumulation_steps,
        "kept_from_command_line": sorted(
            k for k in (*TCE_PAPER_SETTINGS, "per_device_train_batch_size") if k in explicit
        ),
        "metric_for_best_model": new_args.metric_for_best_model,
        "greater_is_better": new_args.greater_is_better,
        "overrides": {k: getattr(v, "value", v) for k, v in overrides.items()},
    }
    return ProtocolSetup(new_args, [], record)


def configure_image_protocol(
    protocol_args: Any,
    training_args: SquareLossTrainingArguments,
    data_args: Any,
    noise_args: Any,
    explicit: set[str] | frozenset[str] = frozenset(),
) -> ProtocolSetup:
    """The training arguments, callbacks and record of the chosen protocol (the input arguments are not changed).

    ``explicit``: the ``TrainingArguments`` fields given on the command line, which ``tce_paper`` keeps. Model
    selection is on validation accuracy unless ``--metric_for_best_model`` says otherwise.
    """
    if protocol_args.protocol == "tce_paper" and training_args.do_train:
        return _tce_paper(protocol_args, training_args, set(explicit))
    if protocol_args.protocol == "tce_paper":
        return ProtocolSetup(training_args, [], {"name": "evaluation_only"})
    return configure_protocol(
        protocol_args,
        training_args,
        main_metric="accuracy",
        data_args=data_args,
        noise_args=noise_args,
        same_data=SAME_DATA,
    )


def steps_per_epoch(num_training_steps: int, num_train_epochs: float) -> float:
    """Optimizer steps per epoch, from the Trainer's total for a whole number of epochs."""
    if num_train_epochs <= 0 or not math.isfinite(num_train_epochs):
        raise ValueError(f"num_train_epochs must be > 0, got {num_train_epochs}")
    return num_training_steps / num_train_epochs
