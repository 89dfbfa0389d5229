"""A small GPT-2-shaped language model trained from scratch on SST-2's sentences with ce, square and tce.

Every run has the same budget (steps, batch, learning rate, seed). ``square`` trains through the output layer's Gram
matrix (``loss_from_hidden_states=True``); ``square:logits`` trains the same model with the same loss through the
materialised logits, for the wall-time comparison (its figures should match ``square`` up to float rounding). ``ce``
and ``tce`` train from the hidden states too (blocks of rows).

Evaluation on SST-2's dev sentences: next-token accuracy on all 872 sentences; perplexity with the scores scaled by
one factor ``s`` (``softmax(s * f)``: a temperature for ce/tce, the score sharpness for the square loss) fitted by
maximum likelihood on the first half of the dev sentences and measured on the second half; and, for reference, the
perplexity of ``softmax(f)`` (``s = 1``) on the second half.

    python recipes/benchmarks/lm_sst2.py                       # defaults: 200 steps, batch 32, 8,000 words
    python recipes/benchmarks/lm_sst2.py --losses square square:logits --steps 50
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import GPT2Config, GPT2LMHeadModel, TrainerCallback

from hf_squareloss import SquareLossTrainer, SquareLossTrainingArguments
from hf_squareloss.shared_data import shared_dir

PAD, UNK, BOS, EOS = 0, 1, 2, 3


def read_sentences(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8") as fh:
        rows = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row["sentence"].lower().split() for row in rows]


def build_vocab(sentences: list[list[str]], size: int) -> dict[str, int]:
    counts = collections.Counter(w for s in sentences for w in s)
    words = [w for w, _ in counts.most_common(size - 4)]
    return {w: i + 4 for i, w in enumerate(words)}


def encode(sentences, vocab, length: int) -> dict[str, list[list[int]]]:
    ids, masks, labels = [], [], []
    for s in sentences:
        tokens = [BOS, *(vocab.get(w, UNK) for w in s), EOS][:length]
        pad = length - len(tokens)
        ids.append(tokens + [PAD] * pad)
        masks.append([1] * len(tokens) + [0] * pad)
        labels.append(tokens + [-100] * pad)
    return {"input_ids": ids, "attention_mask": masks, "labels": labels}


class _Timer(TrainerCallback):
    def __init__(self) -> None:
        self.start = self.seconds = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        self.seconds = time.perf_counter() - self.start


@torch.no_grad()
def dev_scores(model, data: dict[str, list[list[int]]], batch: int = 64):
    """Next-token scores and targets on the dev sentences: a list of (scores (n_i, V), targets (n_i,)) per sentence."""
    model.eval()
    out = []
    for start in range(0, len(data["input_ids"]), batch):
        ids = torch.tensor(data["input_ids"][start : start + batch])
        mask = torch.tensor(data["attention_mask"][start : start + batch])
        labels = torch.tensor(data["labels"][start : start + batch])
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        targets = labels[:, 1:]
        for row in range(ids.shape[0]):
            keep = targets[row] != -100
            out.append((logits[row][keep], targets[row][keep]))
    return out


def fit_scale(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """The s > 0 maximising the likelihood of softmax(s * scores) (LBFGS on log s)."""
    log_s = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_s], lr=0.5, max_iter=25, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(scores * log_s.exp(), targets)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_s.detach().exp())


def evaluate(model, dev) -> dict[str, float]:
    per_sentence = dev_scores(model, dev)
    half = len(per_sentence) // 2
    fit_s = torch.cat([s for s, _ in per_sentence[:half]])
    fit_t = torch.cat([t for _, t in per_sentence[:half]])
    test_s = torch.cat([s for s, _ in per_sentence[half:]])
    test_t = torch.cat([t for _, t in per_sentence[half:]])
    all_s = torch.cat([s for s, _ in per_sentence])
    all_t = torch.cat([t for _, t in per_sentence])
    scale = fit_scale(fit_s, fit_t)
    return {
        "accuracy": float((all_s.argmax(-1) == all_t).float().mean()),
        "scale": scale,
        "perplexity_calibrated": math.exp(float(F.cross_entropy(test_s * scale, test_t))),
        "perplexity_raw": math.exp(float(F.cross_entropy(test_s, test_t))),
        "dev_tokens": int(all_t.numel()),
    }


def run(name: str, train: Dataset, dev, vocab_size: int, ns) -> dict[str, float]:
    loss_type, _, path = name.partition(":")
    torch.manual_seed(ns.seed)
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=ns.length,
        n_embd=ns.width,
        n_layer=ns.layers,
        n_head=ns.heads,
        bos_token_id=BOS,
        eos_token_id=EOS,
    )
    model = GPT2LMHeadModel(config)
    timer = _Timer()
    with tempfile.TemporaryDirectory() as out:
        args = SquareLossTrainingArguments(
            output_dir=out,
            loss_type=loss_type,
            loss_from_hidden_states=path != "logits",
            per_device_train_batch_size=ns.batch,
            max_steps=ns.steps,
            learning_rate=ns.lr,
            warmup_steps=ns.steps // 10,
            lr_scheduler_type="linear",
            weight_decay=0.01,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
            seed=ns.seed,
        )
        trainer = SquareLossTrainer(model=model, args=args, train_dataset=train, callbacks=[timer])
        trainer.train()
    tokens = sum(sum(1 for x in row[1:] if x != -100) for row in train["labels"][: ns.steps * ns.batch])
    result = evaluate(model, dev)
    result.update(
        {"train_seconds": timer.seconds, "train_tokens": tokens, "tokens_per_second": tokens / timer.seconds}
    )
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--losses", nargs="+", default=["ce", "square", "square:logits", "tce"])
    p.add_argument(
        "--vocab", type=int, default=8000, help="words kept, specials included (default: %(default)s)"
    )
    p.add_argument("--length", type=int, default=32)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--data", type=Path, default=None, help="SST-2 folder (default: the shared data's glue/SST-2)"
    )
    p.add_argument("--json", default=None)
    ns = p.parse_args(argv)
    folder = ns.data or shared_dir("data") / "glue" / "SST-2"
    if not (folder / "train.tsv").is_file():
        raise SystemExit(f"{folder}/train.tsv not found: pass --data or set HF_SQUARELOSS_DATA")
    train_sentences = read_sentences(folder / "train.tsv")
    dev_sentences = read_sentences(folder / "dev.tsv")
    vocab = build_vocab(train_sentences, ns.vocab)
    g = torch.Generator().manual_seed(ns.seed)
    order = torch.randperm(len(train_sentences), generator=g).tolist()
    train = Dataset.from_dict(encode([train_sentences[i] for i in order], vocab, ns.length))
    dev = encode(dev_sentences, vocab, ns.length)
    print(
        f"SST-2 sentences, {len(vocab) + 4} words, GPT-2 {ns.layers} layers x {ns.width}, {ns.steps} steps x batch "
        f"{ns.batch}, lr {ns.lr}, seed {ns.seed}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(
        "| loss | path | dev next-token acc | fitted scale | calibrated ppl | ppl at scale 1 | train s | tokens/s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    results = {}
    for name in ns.losses:
        r = run(name, train, dev, len(vocab) + 4, ns)
        results[name] = r
        loss_type, _, path = name.partition(":")
        path = (
            "logits" if path == "logits" else ("Gram matrix" if loss_type == "square" else "blocks of rows")
        )
        print(
            f"| {loss_type} | {path} | {r['accuracy']:.4f} | {r['scale']:.3g} | {r['perplexity_calibrated']:.1f} | "
            f"{r['perplexity_raw']:.1f} | {r['train_seconds']:.1f} | {r['tokens_per_second']:.0f} |",
            flush=True,
        )
    if ns.json:
        Path(ns.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
