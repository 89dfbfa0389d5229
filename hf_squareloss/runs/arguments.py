"""The command-line arguments every recipe shares, and how a recipe reads its command line.

:class:`LabelNoiseArguments` (synthetic noise on the training labels) and :class:`ProtocolArguments` (the papers'
training protocols; a recipe may subclass it to add its own, as the image recipe adds ``tce_paper``) become groups of
``--flags`` through :class:`transformers.HfArgumentParser`, beside the recipe's own model and data arguments and
:class:`~hf_squareloss.SquareLossTrainingArguments`.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..noise import NOISE_TYPES

__all__ = [
    "DEFAULT_PATIENCE",
    "PROTOCOLS",
    "LabelNoiseArguments",
    "ProtocolArguments",
    "explicit_flags",
    "parse_recipe_args",
]

PROTOCOLS = ("early_stopping", "same_epochs", "fixed_epochs")
"""The protocols every recipe offers (see :mod:`hf_squareloss.runs.protocol`)."""
DEFAULT_PATIENCE = 5


@dataclass
class LabelNoiseArguments:
    """Synthetic noise on the training labels (never on the evaluation labels)."""

    label_noise: float = field(
        default=0.0,
        metadata={
            "help": "Noise rate ETA in [0, 1): each training label is corrupted with this probability."
        },
    )
    label_noise_type: str = field(
        default="symmetric",
        metadata={
            "help": "'symmetric': a corrupted label becomes another class chosen uniformly; 'pair': class i "
            "becomes class (i + 1) mod C; 'uniform' (the TCE paper's): a corrupted label is redrawn from all C "
            "classes, possibly the same one, so that a label changes with probability ETA * (C - 1) / C.",
            "choices": list(NOISE_TYPES),
        },
    )
    label_noise_exact: bool = field(
        default=False,
        metadata={
            "help": "Corrupt exactly round(ETA * N) training labels instead of each with probability ETA."
        },
    )
    noise_seed: int = field(
        default=0, metadata={"help": "Seed of the label noise, independent of --seed (the model's)."}
    )

    def __post_init__(self) -> None:
        if not (isinstance(self.label_noise, (int, float)) and math.isfinite(self.label_noise)):
            raise ValueError(f"--label_noise must be a number in [0, 1), got {self.label_noise!r}")
        if not 0.0 <= self.label_noise < 1.0:
            raise ValueError(f"--label_noise must be in [0, 1), got {self.label_noise}")
        if self.label_noise_type not in NOISE_TYPES:
            raise ValueError(
                f"--label_noise_type must be one of {NOISE_TYPES}, got {self.label_noise_type!r}"
            )

    @property
    def active(self) -> bool:
        return self.label_noise > 0.0


@dataclass
class ProtocolArguments:
    """How long to train and which model to keep (the papers' protocols)."""

    protocol: str = field(
        default="early_stopping",
        metadata={
            "help": "'early_stopping': evaluate every epoch, stop after --early_stopping_patience epochs without "
            "improvement of the validation metric, keep the best model (both papers). 'same_epochs': train for "
            "the epochs a reference run used (Hui & Belkin's second protocol; needs --reference_run). "
            "'fixed_epochs': train --num_train_epochs with your evaluation and save strategies.",
            "choices": list(PROTOCOLS),
        },
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": f"Epochs without improvement before stopping (early_stopping only; default {DEFAULT_PATIENCE})."
        },
    )
    reference_run: str | None = field(
        default=None,
        metadata={"help": "same_epochs: output folder of the finished run (usually cross-entropy) to match."},
    )
    reference_epochs: str = field(
        default="best",
        metadata={
            "help": "same_epochs: 'best' trains for the epochs at which the reference run's kept model was "
            "reached; 'trained' for all the epochs it ran.",
            "choices": ["best", "trained"],
        },
    )
    calibrate: bool = field(
        default=False,
        metadata={
            "help": "After training, fit a temperature on the validation set by minimising the NLL of the served "
            "probabilities, store it in the model's config (hf_squareloss.temperature) and evaluate with it; "
            "the metrics before calibration are kept under *_uncalibrated names. Needs --do_eval."
        },
    )
    keep_checkpoints: bool = field(
        default=True,
        metadata={
            "help": "Keep the checkpoint-* folders once the run has finished (they serve only to resume)."
        },
    )

    known_protocols: ClassVar[tuple[str, ...]] = PROTOCOLS
    """The protocols a recipe offers (a subclass adds its own)."""

    def __post_init__(self) -> None:
        if self.protocol not in self.known_protocols:
            raise ValueError(f"--protocol must be one of {self.known_protocols}, got {self.protocol!r}")
        if self.reference_epochs not in ("best", "trained"):
            raise ValueError(f"--reference_epochs must be 'best' or 'trained', got {self.reference_epochs!r}")
        if self.protocol == "same_epochs" and not self.reference_run:
            raise ValueError("--protocol same_epochs needs --reference_run DIR (the finished run to match)")
        if self.protocol != "same_epochs" and self.reference_run:
            raise ValueError(
                f"--reference_run is only used with --protocol same_epochs, not {self.protocol!r}"
            )
        if self.early_stopping_patience is not None:
            if self.protocol != "early_stopping":
                raise ValueError(
                    f"--early_stopping_patience applies to --protocol early_stopping, not {self.protocol!r}"
                )
            if self.early_stopping_patience < 1:
                raise ValueError(
                    f"--early_stopping_patience must be >= 1, got {self.early_stopping_patience}"
                )

    @property
    def patience(self) -> int:
        return DEFAULT_PATIENCE if self.early_stopping_patience is None else self.early_stopping_patience


def parse_recipe_args(argument_classes: Sequence[type], argv: Sequence[str] | None = None) -> tuple[Any, ...]:
    """Parse ``argv`` (default ``sys.argv[1:]``) into one object per class of ``argument_classes``, or a single
    ``.json`` file of arguments, as in the ``transformers`` examples."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(tuple(argument_classes))
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)


def explicit_flags(argv: Sequence[str] | None) -> set[str]:
    """The argument names given on the command line (or the keys of its ``.json`` file): a protocol keeps them."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith(".json"):
        with open(argv[0], encoding="utf-8") as fh:
            return set(json.load(fh))
    names = set()
    for arg in argv:
        if arg.startswith("--"):
            names.add(arg[2:].split("=", 1)[0].replace("-", "_"))
    return names
