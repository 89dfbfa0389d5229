"""Evaluate a tiny causal LM on 7 ragged rows with SquareLossTrainer; write eval_nll and an independent float64
reference to ``OUT_DIR/eval.json`` (rank 0). Run directly or under ``torchrun --nproc_per_node 2``: with 2 processes
and batch 2 the sampler repeats a row to even out the last batch, which must not be counted.

    python eval_nll.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from datasets import Dataset

sys.path.insert(0, str(Path(__file__).parent))
import one_step

from hf_squareloss import SquareLossTrainer, SquareLossTrainingArguments
from hf_squareloss.runs.lifecycle import end_process_group

LENGTHS = [8, 3, 5, 8, 4, 6, 2]


def main(out_dir: str) -> None:
    model = one_step.tiny_lm("gpt2").eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, one_step.LM_VOCAB, (len(LENGTHS), 8), generator=g)
    labels = ids.clone()
    for row, n in enumerate(LENGTHS):
        labels[row, n:] = -100
    data = Dataset.from_dict({"input_ids": ids.tolist(), "labels": labels.tolist()})
    args = SquareLossTrainingArguments(
        output_dir=out_dir,
        loss_type="tce",
        per_device_eval_batch_size=2,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
    )
    trainer = SquareLossTrainer(model=model, args=args, eval_dataset=data)
    metrics = trainer.evaluate()
    if trainer.is_world_process_zero():
        with torch.no_grad():
            logits = model(input_ids=ids).logits.double()
        total, count = 0.0, 0
        for row, n in enumerate(LENGTHS):
            for t in range(1, n):
                total -= float(torch.log_softmax(logits[row, t - 1], -1)[ids[row, t]])
                count += 1
        out = {**metrics, "expected_nll": total / count, "world_size": int(os.environ.get("WORLD_SIZE", "1"))}
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "eval.json").write_text(json.dumps(out))
    end_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
