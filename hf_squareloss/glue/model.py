"""The GLUE recipe's model: a pretrained model with a classification head for the task, its tokenizer, the collator."""

from __future__ import annotations

from typing import Any

from .arguments import DataTrainingArguments, ModelArguments
from .tasks import GlueTask

__all__ = ["load_model"]


def load_model(
    model_args: ModelArguments, data_args: DataTrainingArguments, task: GlueTask, mixed_precision: bool
) -> tuple[Any, Any, Any]:
    """``(model, tokenizer, data collator)``: the model with a head of the task's labels (its ``id2label``), and a
    collator that pads each batch to its longest input (or none with ``--pad_to_max_length``)."""
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        default_data_collator,
    )

    hub = {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision}
    config = AutoConfig.from_pretrained(
        model_args.config_name or model_args.model_name_or_path,
        num_labels=task.num_labels,
        id2label=task.id2label,
        label2id=task.label2id,
        **hub,
    )
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.tokenizer_name or model_args.model_name_or_path, **hub
    )
    model = AutoModelForSequenceClassification.from_pretrained(
        model_args.model_name_or_path,
        config=config,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        **hub,
    )
    if data_args.pad_to_max_length:
        return model, tokenizer, default_data_collator
    return (
        model,
        tokenizer,
        DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if mixed_precision else None),
    )
