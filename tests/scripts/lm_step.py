"""One optimisation step of a tiny GPT-2 language model trained from its hidden states; saves the parameters.

Run directly (one process) or under ``torchrun --nproc_per_node 2`` (two CPU processes, gloo): the test compares
the parameters after the step. Usage: ``lm_step.py OUT_DIR PER_DEVICE_BATCH GRAD_ACCUM``.
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile

import torch
from datasets import Dataset
from transformers import GPT2Config, GPT2LMHeadModel

from hf_squareloss import SquareLossTrainer, SquareLossTrainingArguments
from hf_squareloss.runs.lifecycle import end_process_group

NUM_EXAMPLES = 16
LENGTH = 12
VOCAB = 400
LOSS_TYPES = ("ce", "square", "tce")


def tiny_gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=32,
        n_embd=16,
        n_layer=1,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return GPT2LMHeadModel(config)


def dataset() -> Dataset:
    """Ragged sequences (4 to 12 tokens) padded to 12: pad id 0, attention mask, labels -100 on the padding."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB, (NUM_EXAMPLES, LENGTH), generator=g)
    lengths = torch.randint(4, LENGTH + 1, (NUM_EXAMPLES,), generator=g)
    mask = torch.arange(LENGTH) < lengths.unsqueeze(-1)
    ids = torch.where(mask, ids, 0)
    labels = torch.where(mask, ids, -100)
    return Dataset.from_dict(
        {"input_ids": ids.tolist(), "attention_mask": mask.long().tolist(), "labels": labels.tolist()}
    )


def training_args(
    out: str, batch: int, accumulation: int, loss_type: str, **kw
) -> SquareLossTrainingArguments:
    return SquareLossTrainingArguments(
        output_dir=out,
        loss_type=loss_type,
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
        **kw,
    )


def one_step(base, data, batch: int, accumulation: int, loss_type: str, out: str, hidden: bool = True):
    model = copy.deepcopy(base)
    args = training_args(out, batch, accumulation, loss_type, loss_from_hidden_states=hidden)
    SquareLossTrainer(model=model, args=args, train_dataset=data).train()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def main() -> None:
    out_dir, batch, accumulation = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rank = int(os.environ.get("RANK", "0"))
    base, data = tiny_gpt2(), dataset()
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            loss_type: one_step(base, data, batch, accumulation, loss_type, tmp) for loss_type in LOSS_TYPES
        }
    if rank == 0:
        torch.save(results, os.path.join(out_dir, "params.pt"))
    end_process_group()


if __name__ == "__main__":
    main()
