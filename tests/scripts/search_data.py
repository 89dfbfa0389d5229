"""The data, model and Trainer of the search tests: 48 real SST-2 sentences (MiniLM's tokenizer, ids folded into
the tiny BERT's 60 tokens) and a tiny BERT made by ``model_init``."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import one_step
from datasets import Dataset

from hf_squareloss import SquareLossTrainer, SquareLossTrainingArguments


def sst2(tsv: str | Path, model_dir: str | Path, rows: int = 48) -> Dataset:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    with open(tsv, encoding="utf-8") as fh:
        lines = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[:rows]
    encoded = tokenizer([r["sentence"] for r in lines], truncation=True, max_length=16, padding="max_length")
    return Dataset.from_dict(
        {
            "input_ids": [[i % 60 for i in row] for row in encoded["input_ids"]],
            "attention_mask": encoded["attention_mask"],
            "labels": [int(r["label"]) for r in lines],
        }
    )


def model_init():
    return one_step.tiny_bert(num_labels=2)


def args(out: str | Path, **kw: Any) -> SquareLossTrainingArguments:
    base = dict(
        output_dir=str(out),
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
        logging_strategy="no",
        save_strategy="steps",
        save_steps=3,
        max_steps=3,
        learning_rate=5e-2,
        per_device_train_batch_size=8,
        seed=0,
    )
    return SquareLossTrainingArguments(**{**base, **kw})


def trainer(out: str | Path, data: Dataset, **kw: Any) -> SquareLossTrainer:
    return SquareLossTrainer(
        model_init=model_init, args=args(out, **kw), train_dataset=data, eval_dataset=data
    )
