"""Command-line arguments of the GLUE recipe: its model and data arguments.

Each dataclass becomes a group of ``--flags`` through :class:`transformers.HfArgumentParser`, as in the
``transformers`` examples. The recipe's other groups are shared with every recipe: the label noise and the protocol
(:mod:`hf_squareloss.runs.arguments`), and :class:`~hf_squareloss.SquareLossTrainingArguments`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .data import HUB_DATASET
from .tasks import get_task, task_names

__all__ = ["DataTrainingArguments", "ModelArguments"]


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
