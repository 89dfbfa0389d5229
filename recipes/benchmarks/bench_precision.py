"""Training-step time under bf16 autocast against float32 on the CPU, same run, same model, same batches.

Whether ``--bf16 --use_cpu`` pays depends on the CPU: with AVX512-BF16 or AMX, bf16 matrix products are native;
without them (an AVX2 machine, say) they are emulated. This measures it on the machine at hand: the 3-layer MiniLM
of the shared models folder (``$HF_SQUARELOSS_MODELS/paraphrase-MiniLM-L3-v2``) with a sequence-classification
head, real SST-2 sentences (``$HF_SQUARELOSS_DATA/glue/SST-2/train.tsv``) padded to a fixed length, the square
loss, forward + backward + an AdamW step. The two precisions alternate in rounds, in a new random order each; the
ratio is median(bf16) / median(float32) of the per-step times, first ``--warmup`` steps of each round dropped.

    python recipes/benchmarks/bench_precision.py
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import random
import statistics
import sys
import time

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_squareloss import square_loss
from hf_squareloss.environment import cpu_bf16_is_native
from hf_squareloss.shared_data import shared_dir


def _batch(tokenizer, batch: int, seq_len: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    path = shared_dir("data") / "glue" / "SST-2" / "train.tsv"
    if not path.is_file():
        raise SystemExit(f"{path} not found: set HF_SQUARELOSS_DATA to the folder holding glue/SST-2")
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[1 : batch + 1]
    inputs = tokenizer(
        [r[0] for r in rows], padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt"
    )
    return dict(inputs), torch.tensor([int(r[1]) for r in rows])


def _steps(model_dir: str, precision: str, inputs, labels, steps: int) -> list[float]:
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        )
        with autocast:
            logits = model(**inputs).logits
        loss = square_loss(logits, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="sentences per step")
    parser.add_argument("--seq-len", type=int, default=32, help="tokens per sentence (padded)")
    parser.add_argument("--steps", type=int, default=4, help="steps per configuration and round")
    parser.add_argument("--warmup", type=int, default=1, help="steps dropped at the start of each round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, each running both precisions")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ns = parser.parse_args(argv)
    if ns.steps <= ns.warmup:
        parser.error("--steps must exceed --warmup")
    if ns.threads:
        torch.set_num_threads(ns.threads)
    model_dir = str(shared_dir("models") / "paraphrase-MiniLM-L3-v2")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    inputs, labels = _batch(tokenizer, ns.batch, ns.seq_len)
    native = cpu_bf16_is_native()
    print(
        f"torch {torch.__version__}, CPU kernels {torch.backends.cpu.get_cpu_capability()}, native bf16: "
        f"{ {True: 'yes', False: 'no', None: 'unknown'}[native] }, {torch.get_num_threads()} threads; "
        f"batch {ns.batch} x {ns.seq_len} tokens"
    )
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    rng = random.Random(0)
    for round_ in range(ns.rounds):
        order = list(times)
        rng.shuffle(order)
        for precision in order:
            step_times = _steps(model_dir, precision, inputs, labels, ns.steps)[ns.warmup :]
            times[precision] += step_times
            print(
                f"round {round_ + 1}: {precision} median {1000 * statistics.median(step_times):.1f} ms/step"
            )
    fp32, bf16 = (statistics.median(times[p]) for p in ("fp32", "bf16"))
    print("| precision | median ms/step | time / float32 |")
    print("| --- | --- | --- |")
    print(f"| float32 | {1000 * fp32:.1f} | 1.00 |")
    print(f"| bf16 autocast | {1000 * bf16:.1f} | {bf16 / fp32:.2f} |")
    verdict = "faster" if bf16 < fp32 else "slower"
    print(f"bf16 autocast is {max(bf16 / fp32, fp32 / bf16):.1f}x {verdict} than float32 on this CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
