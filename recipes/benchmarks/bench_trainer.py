"""Training-step time of ``SquareLossTrainer`` against the stock ``transformers.Trainer``, same run, same model.

The model is the 3-layer MiniLM in the shared models folder (``$HF_SQUARELOSS_MODELS/paraphrase-MiniLM-L3-v2``),
fine-tuned for sequence classification on real SST-2 sentences (``$HF_SQUARELOSS_DATA/glue/SST-2/train.tsv``),
batch 32, sequences padded to a fixed length so every step costs the same. Each configuration trains for
``--steps`` steps; the per-step wall time is taken from a callback (step begin to step end, first
``--warmup`` steps dropped), and the configurations are run in several rounds, in a new random order each. The ratio
median(ours) / median(stock) is the Trainer's overhead.

    python recipes/benchmarks/bench_trainer.py
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import sys
import tempfile
import time

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from hf_squareloss import SquareLossTrainer, SquareLossTrainingArguments
from hf_squareloss.shared_data import shared_dir


class _StepTimer(TrainerCallback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


def _sentences(n: int) -> list[str]:
    path = shared_dir("data") / "glue" / "SST-2" / "train.tsv"
    if not path.is_file():
        raise SystemExit(f"{path} not found: set HF_SQUARELOSS_DATA to the folder holding glue/SST-2")
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[1 : n + 1]
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def run(config: str, model_dir, dataset, steps: int, batch: int) -> list[float]:
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    timer = _StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(
            output_dir=tmp,
            per_device_train_batch_size=batch,
            max_steps=steps,
            learning_rate=2e-5,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
            seed=0,
            dataloader_num_workers=0,
        )
        if config == "stock":
            trainer = Trainer(
                model=model, args=TrainingArguments(**common), train_dataset=dataset, callbacks=[timer]
            )
        else:
            args = SquareLossTrainingArguments(loss_type=config, **common)
            trainer = SquareLossTrainer(model=model, args=args, train_dataset=dataset, callbacks=[timer])
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    return timer.times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--losses", nargs="+", default=["ce", "square", "tce"])
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    ns = p.parse_args(argv)
    if ns.threads:
        torch.set_num_threads(ns.threads)
    from datasets import Dataset
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    model_dir = shared_dir("models") / "paraphrase-MiniLM-L3-v2"
    if not model_dir.is_dir():
        raise SystemExit(f"{model_dir} not found: set HF_SQUARELOSS_MODELS to the folder holding it")
    texts, labels = _sentences(ns.batch * ns.steps)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=ns.seq_len)
    dataset = Dataset.from_dict({**enc, "labels": labels})
    configs = ["stock", *ns.losses]
    per_step: dict[str, list[float]] = {c: [] for c in configs}
    rng = random.Random(0)  # a new order each round: no configuration always first or after the same one
    order = list(configs)
    for _ in range(ns.rounds):
        rng.shuffle(order)
        for config in order:
            per_step[config] += run(config, model_dir, dataset, ns.steps, ns.batch)[ns.warmup :]
    base = statistics.median(per_step["stock"])
    print(
        f"MiniLM-L3 sequence classification, batch {ns.batch}, length {ns.seq_len}, {ns.steps} steps x "
        f"{ns.rounds} rounds (first {ns.warmup} dropped), {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}"
    )
    print("| trainer | median step ms | ratio to stock Trainer |")
    print("|---|---|---|")
    rows = []
    for config in configs:
        med = statistics.median(per_step[config])
        name = "stock Trainer (model's CE)" if config == "stock" else f"SquareLossTrainer loss_type={config}"
        rows.append({"config": config, "median_ms": 1000 * med, "ratio": med / base})
        print(f"| {name} | {1000 * med:.1f} | {med / base:.3f} |")
    if ns.json:
        with open(ns.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
