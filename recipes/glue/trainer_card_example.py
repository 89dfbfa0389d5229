"""Fine-tune a classifier on a slice of SST-2 with SquareLossTrainer, write its model card, optionally push it.

A script of the kind a user writes: only the public API of transformers and hf-squareloss. It produced
``results/example_trainer_card.md``::

    OMP_NUM_THREADS=1 python recipes/glue/trainer_card_example.py \\
        --model_name_or_path ../shared/models/paraphrase-MiniLM-L3-v2 \\
        --base_model_id sentence-transformers/paraphrase-MiniLM-L3-v2 \\
        --data_dir ../shared/data/glue/SST-2 --output_dir /tmp/sst2-square

Add ``--push_to_hub --hub_model_id you/sst2-square`` to push the model with its card (``trainer.push_to_hub()``).
"""

from __future__ import annotations

import argparse
import csv
import itertools
from pathlib import Path

import numpy as np
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_squareloss import SquareLossTrainer, SquareLossTrainingArguments, pipeline_kwargs

LABELS = ["negative", "positive"]


def read_sst2(path: Path, rows: int) -> Dataset:
    """The first ``rows`` sentences of an SST-2 TSV file (header ``sentence<TAB>label``)."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        items = [
            {"sentence": r["sentence"], "label": int(r["label"])} for r in itertools.islice(reader, rows)
        ]
    return Dataset.from_list(items)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model_name_or_path", required=True)
    parser.add_argument(
        "--base_model_id", default=None, help="Hub id of the model, when loaded from a folder"
    )
    parser.add_argument("--data_dir", required=True, help="folder with SST-2's train.tsv and dev.tsv")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--loss_type", default="square")
    parser.add_argument("--train_rows", type=int, default=400)
    parser.add_argument("--eval_rows", type=int, default=200)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--push_to_hub", action="store_true")
    parser.add_argument("--hub_model_id", default=None)
    ns = parser.parse_args()

    tokenizer = AutoTokenizer.from_pretrained(ns.model_name_or_path)
    model = AutoModelForSequenceClassification.from_pretrained(
        ns.model_name_or_path,
        num_labels=2,
        id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)},
    )

    def encode(batch: dict) -> dict:
        return tokenizer(batch["sentence"], truncation=True, max_length=64, padding="max_length")

    data = Path(ns.data_dir)
    train = read_sst2(data / "train.tsv", ns.train_rows).map(encode, batched=True)
    dev = read_sst2(data / "dev.tsv", ns.eval_rows).map(encode, batched=True)

    def accuracy(prediction) -> dict[str, float]:
        return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}

    args = SquareLossTrainingArguments(
        output_dir=ns.output_dir,
        loss_type=ns.loss_type,
        num_train_epochs=ns.epochs,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        learning_rate=5e-5,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="epoch",
        seed=0,
        report_to=[],
        use_cpu=True,
        push_to_hub=ns.push_to_hub,
        hub_model_id=ns.hub_model_id,
    )
    trainer = SquareLossTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=dev,
        processing_class=tokenizer,
        compute_metrics=accuracy,
    )
    trainer.train()
    print(trainer.evaluate())
    card = {"dataset_name": "nyu-mll/glue", "dataset_config": "sst2", "finetuned_from": ns.base_model_id}
    if ns.push_to_hub:
        print(trainer.push_to_hub(**card))
    else:
        trainer.save_model()
        print("model card:", trainer.create_model_card(**card))
    print("read the outputs with pipeline(...,", pipeline_kwargs(trainer.model), ")")


if __name__ == "__main__":
    main()
