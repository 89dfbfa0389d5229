"""One optimisation step of a tiny BERT classifier with every loss type; saves the parameters.

Run directly (one process) or under ``torchrun --nproc_per_node 2`` (two CPU processes, gloo): the test compares
the parameters after the step. Usage: ``one_step.py OUT_DIR PER_DEVICE_BATCH GRAD_ACCUM [stock]``.
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile

import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from hf_squareloss import SquareLossTrainer, SquareLossTrainingArguments, loss_types

NUM_EXAMPLES = 16


def tiny_bert(num_labels: int = 3) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=60,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=32,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config)


def dataset() -> Dataset:
    g = torch.Generator().manual_seed(1)
    return Dataset.from_dict(
        {
            "input_ids": torch.randint(1, 60, (NUM_EXAMPLES, 10), generator=g).tolist(),
            "labels": torch.randint(0, 3, (NUM_EXAMPLES,), generator=g).tolist(),
        }
    )


def one_step(
    base, train_dataset, batch: int, accumulation: int, loss_type: str | None, out: str
) -> torch.Tensor:
    model = copy.deepcopy(base)
    common = dict(
        output_dir=out,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        learning_rate=0.5,
        optim="sgd",
        lr_scheduler_type="constant",
        max_grad_norm=1e9,
        weight_decay=0.0,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
        dataloader_drop_last=False,
    )
    if loss_type is None:
        trainer = Trainer(model=model, args=TrainingArguments(**common), train_dataset=train_dataset)
    else:
        args = SquareLossTrainingArguments(loss_type=loss_type, **common)
        trainer = SquareLossTrainer(model=model, args=args, train_dataset=train_dataset)
    trainer.train()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def main() -> None:
    out_dir, batch, accumulation = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    stock = len(sys.argv) > 4 and sys.argv[4] == "stock"
    rank = int(os.environ.get("RANK", "0"))
    base, data = tiny_bert(), dataset()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for loss_type in [None] if stock else loss_types():
            results[loss_type or "stock"] = one_step(base, data, batch, accumulation, loss_type, tmp)
    if rank == 0:
        torch.save(results, os.path.join(out_dir, "params.pt"))


if __name__ == "__main__":
    main()
