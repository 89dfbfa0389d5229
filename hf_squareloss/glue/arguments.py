"""Command-line arguments of the GLUE recipe, besides :class:`~hf_squareloss.SquareLossTrainingArguments`.

Each dataclass becomes a group of ``--flags`` through :class:`transformers.HfArgumentParser`, as in the
``transformers`` examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from ..noise import NOISE_TYPES
from .data import HUB_DATASET
from .tasks import get_task, task_names

__all__ = [
    "PROTOCOLS",
    "DataTrainingArguments",
    "LabelNoiseArguments",
    "ModelArguments",
    "ProtocolArguments",
]

PROTOCOLS = ("early_stopping", "same_epochs", "fixed_epochs")
DEFAULT_PATIENCE = 5


@dataclass
class ModelArguments:
    """Which pretrained model, config and tokenizer to fine-tune."""

    model_name_or_path: str = field(
        metadata={"help": "Path to a pretrained model or its identifier on huggingface.co/models."}
    )
    config_name: str | None = field(
        default=None, metadata={"help": "Pretrained config name or path, if not the same as the model's."}
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Pretrained tokenizer name or path, if not the same as the model's."}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where to store models and data sets downloaded from the Hub."}
    )
    model_revision: str = field(
        default="main", metadata={"help": "Model version to use (branch name, tag or commit id)."}
    )
    base_model_id: str | None = field(
        default=None,
        metadata={
            "help": "Hub id of the model fine-tuned, written as base_model in the model card; needed when "
            "--model_name_or_path is a local folder (a Hub id is used as it is)."
        },
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "Load a checkpoint whose classification head has another number of labels."},
    )


@dataclass
class DataTrainingArguments:
    """Which GLUE task and data to train and evaluate on."""

    task_name: str = field(metadata={"help": f"GLUE task: one of {task_names()} (stsb: see the README)."})
    dataset_name: str = field(
        default=HUB_DATASET, metadata={"help": "Hub dataset holding GLUE, used when --data_dir is not given."}
    )
    dataset_revision: str | None = field(
        default=None, metadata={"help": "Revision of the Hub dataset (branch, tag or commit id)."}
    )
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder with the task's files in GLUE's original TSV layout (train.tsv, dev.tsv; MNLI: "
            "dev_matched.tsv, dev_mismatched.tsv). When given, the Hub is not used."
        },
    )
    max_seq_length: int = field(
        default=128, metadata={"help": "Longest tokenized input; longer inputs are truncated."}
    )
    pad_to_max_length: bool = field(
        default=False,
        metadata={
            "help": "Pad every input to --max_seq_length. Default: pad each batch to its longest input, "
            "which is much faster on CPU."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N training examples (before label noise)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N examples of each evaluation split."}
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenization."}
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Redo tokenization of cached data sets."})

    def __post_init__(self) -> None:
        task = get_task(self.task_name)  # ValueError naming the known tasks
        self.task_name = task.name
        if self.max_seq_length < 8:
            raise ValueError(f"--max_seq_length must be at least 8, got {self.max_seq_length}")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")


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
