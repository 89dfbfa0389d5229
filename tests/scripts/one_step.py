"""One optimisation step of a tiny BERT classifier (or a tiny causal LM) with every loss type; saves the parameters.

Run directly (one process) or under ``torchrun --nproc_per_node 2`` (two CPU processes, gloo): the test compares
the parameters after the step. Usage: ``one_step.py OUT_DIR PER_DEVICE_BATCH GRAD_ACCUM [stock] [gpt2|llama]``;
``gpt2`` / ``llama`` train a tiny causal LM on rows of 3 to 12 tokens, right-padded per micro-batch.
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile

import torch
from datasets import Dataset
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Trainer,
    TrainingArguments,
)

from hf_squareloss import SquareLossTrainer, SquareLossTrainingArguments, loss_types
from hf_squareloss.runs.lifecycle import end_process_group

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


LM_VOCAB = 50


def tiny_lm(family: str = "gpt2"):
    """A tiny causal LM: GPT-2 (whose ``loss_type`` is ``None``) or Llama (``"ForCausalLM"``)."""
    torch.manual_seed(0)
    if family == "gpt2":
        config = GPT2Config(
            vocab_size=LM_VOCAB,
            n_embd=16,
            n_layer=1,
            n_head=2,
            n_positions=32,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=1,
            eos_token_id=1,
        )
        return GPT2LMHeadModel(config)
    config = LlamaConfig(
        vocab_size=LM_VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
        bos_token_id=1,
        eos_token_id=1,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config)


def lm_dataset() -> Dataset:
    """16 rows of 3 to 12 tokens (labels are the input ids; the model shifts them)."""
    g = torch.Generator().manual_seed(2)
    lengths = torch.randint(3, 13, (NUM_EXAMPLES,), generator=g).tolist()
    rows = [torch.randint(2, LM_VOCAB, (n,), generator=g).tolist() for n in lengths]
    return Dataset.from_dict({"input_ids": rows, "labels": rows})


def pad_lm_batch(rows: list[dict]) -> dict[str, torch.Tensor]:
    """Right-pad a micro-batch: input ids with 0, attention mask 0 and labels -100 on the padding."""
    width = max(len(row["input_ids"]) for row in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        ids[i, :n] = torch.tensor(row["input_ids"])
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(row["labels"])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def one_step(
    base,
    train_dataset,
    batch: int,
    accumulation: int,
    loss_type: str | None,
    out: str,
    data_collator=None,
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
        trainer = Trainer(
            model=model,
            args=TrainingArguments(**common),
            train_dataset=train_dataset,
            data_collator=data_collator,
        )
    else:
        args = SquareLossTrainingArguments(loss_type=loss_type, **common)
        trainer = SquareLossTrainer(
            model=model, args=args, train_dataset=train_dataset, data_collator=data_collator
        )
    trainer.train()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def main() -> None:
    out_dir, batch, accumulation = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    stock = "stock" in sys.argv[4:]
    family = next((a for a in sys.argv[4:] if a in ("gpt2", "llama")), None)
    rank = int(os.environ.get("RANK", "0"))
    if family is None:
        base, data, collator = tiny_bert(), dataset(), None
    else:
        base, data, collator = tiny_lm(family), lm_dataset(), pad_lm_batch
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for loss_type in [None] if stock else loss_types():
            results[loss_type or "stock"] = one_step(
                base, data, batch, accumulation, loss_type, tmp, collator
            )
    if rank == 0:
        torch.save(results, os.path.join(out_dir, "params.pt"))
    end_process_group()


if __name__ == "__main__":
    main()
