"""Vocabulary-scale losses from hidden states: forward+backward time and peak memory against materialised logits.

For hidden states ``h`` ``(N, d)`` and an output layer ``W`` ``(V, d)`` (both requiring gradients, as in training),
each method computes a loss of ``h @ W.T`` and back-propagates into ``h`` and ``W``:

    ce:logits        F.cross_entropy(F.linear(h, W), y)                 the baseline (matmul included)
    ce:torch-chunked F.linear_cross_entropy(h, W, y, options=LinearCrossEntropyOptions())  (torch's chunked CE)
    ce:linear        hf_squareloss.linear_cross_entropy                 (blocks of rows)
    tce:linear       hf_squareloss.linear_tamed_cross_entropy           (blocks of rows, alpha = 1.5)
    square:linear    hf_squareloss.linear_square_loss                   (Gram matrix, k = 15, M = 30)
    square:logits    hf_squareloss.square_loss(F.linear(h, W), y)       (optional)
    tce:logits       hf_squareloss.tamed_cross_entropy(F.linear(h, W), y) (optional)

All are measured in the same run on the same inputs and printed as ratios against ``ce:logits``. Time: median of
``--repeats`` forward+backward passes after one warm-up, the methods in a new random order each round. Memory: bytes
allocated beyond the inputs at the peak of one forward+backward (gradients of ``h`` and ``W`` included, the same for
every method); on CUDA from ``torch.cuda.max_memory_allocated``, on CPU from the growth of the resident set's
high-water mark in a fresh subprocess per measurement.

    python recipes/benchmarks/bench_linear.py                                   # the three shapes, float32, CPU
    python recipes/benchmarks/bench_linear.py --autocast bfloat16               # under bf16 autocast
    python recipes/benchmarks/bench_linear.py --shapes 8192,32000,768 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import hf_squareloss as hsl

SHAPES = ["8192,32000,768", "8192,128000,768", "4096,32000,2048"]


def _methods() -> dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]]:
    methods = {
        "ce:logits": lambda h, w, y: F.cross_entropy(F.linear(h, w), y),
        "ce:linear": lambda h, w, y: hsl.linear_cross_entropy(h, w, y),
        "tce:linear": lambda h, w, y: hsl.linear_tamed_cross_entropy(h, w, y, alpha=1.5),
        "square:linear": lambda h, w, y: hsl.linear_square_loss(h, w, y, k=15.0, M=30.0),
        "square:logits": lambda h, w, y: hsl.square_loss(F.linear(h, w), y, k=15.0, M=30.0),
        "tce:logits": lambda h, w, y: hsl.tamed_cross_entropy(F.linear(h, w), y, alpha=1.5),
    }
    if hasattr(F, "linear_cross_entropy") and hasattr(torch.nn, "LinearCrossEntropyOptions"):
        options = torch.nn.LinearCrossEntropyOptions()
        methods["ce:torch-chunked"] = lambda h, w, y: F.linear_cross_entropy(h, w, y, options=options)
    return methods


DEFAULT_METHODS = ["ce:logits", "ce:torch-chunked", "ce:linear", "tce:linear", "square:linear"]


def _inputs(n: int, v: int, d: int, device: str, seed: int = 0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    hidden = torch.randn(n, d, generator=g).to(device).requires_grad_(True)
    weight = (torch.randn(v, d, generator=g) / d**0.5).to(device).requires_grad_(True)
    labels = torch.randint(0, v, (n,), generator=g).to(device)
    return hidden, weight, labels


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _step(fn, hidden, weight, labels, device: str, autocast: torch.dtype | None) -> None:
    hidden.grad = weight.grad = None
    with torch.autocast(device_type=device.split(":")[0], dtype=autocast, enabled=autocast is not None):
        loss = fn(hidden, weight, labels)
    loss.backward()


def time_methods(names, shape, device, autocast, repeats, warmup=1) -> dict[str, float]:
    hidden, weight, labels = _inputs(*shape, device)
    methods = _methods()
    fns = {name: methods[name] for name in names}
    for _ in range(warmup):
        for fn in fns.values():
            _step(fn, hidden, weight, labels, device, autocast)
    times: dict[str, list[float]] = {name: [] for name in names}
    rng = random.Random(0)
    order = list(fns)
    for _ in range(repeats):
        rng.shuffle(order)
        for name in order:
            _sync(device)
            start = time.perf_counter()
            _step(fns[name], hidden, weight, labels, device, autocast)
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_here(name, shape, device, autocast) -> int:
    hidden, weight, labels = _inputs(*shape, device)
    fn = _methods()[name]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _step(fn, hidden, weight, labels, device, autocast)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with open("/proc/self/clear_refs", "w") as fh:  # reset the high-water mark (Linux >= 4.0)
        fh.write("5")
    base = _status_bytes("VmRSS")
    _step(fn, hidden, weight, labels, device, autocast)
    return _status_bytes("VmHWM") - base


def peak_memory(name, shape, device, autocast) -> int:
    if device.startswith("cuda"):
        return peak_memory_here(name, shape, device, autocast)
    cmd = [sys.executable, __file__, "--_memory-probe", name, "--shapes", ",".join(map(str, shape))]
    if autocast is not None:
        cmd += ["--autocast", str(autocast).removeprefix("torch.")]
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    return int(out.stdout.strip().splitlines()[-1])


def _shape(text: str) -> tuple[int, int, int]:
    try:
        n, v, d = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is N,V,d (three integers), got {text!r}") from None
    return n, v, d


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--shapes", type=_shape, nargs="+", default=[_shape(s) for s in SHAPES], help="N,V,d triples"
    )
    p.add_argument("--methods", nargs="+", default=None, help=f"default: {' '.join(DEFAULT_METHODS)}")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--autocast", default=None, choices=["bfloat16", "float16"], help="run under torch.autocast"
    )
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    p.add_argument("--json", default=None, help="also write the rows as JSON here")
    p.add_argument("--_memory-probe", dest="probe", default=None, help=argparse.SUPPRESS)
    ns = p.parse_args(argv)
    autocast = getattr(torch, ns.autocast) if ns.autocast else None
    if ns.threads:
        torch.set_num_threads(ns.threads)
    if ns.probe:
        print(peak_memory_here(ns.probe, ns.shapes[0], ns.device, autocast))
        return 0
    available = _methods()
    names = ns.methods or [m for m in DEFAULT_METHODS if m in available]
    unknown = [m for m in names if m not in available]
    if unknown:
        p.error(f"unknown methods {unknown}; choose from {sorted(available)}")
    if names[0] != "ce:logits":
        names = ["ce:logits", *[m for m in names if m != "ce:logits"]]
    print(
        f"device={ns.device}, float32 inputs{f', {ns.autocast} autocast' if autocast else ''}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, {ns.warmup} warm-up + {ns.repeats} timed rounds; "
        "ratios are method / ce:logits"
    )
    header = (
        f"| {'N, V, d':<17} | {'method':<16} | {'fwd+bwd ms':>10} | {'time ratio':>10} | {'peak MiB':>9} | "
        f"{'mem ratio':>9} |"
    )
    print(header)
    print("|" + "|".join("-" * len(col) for col in header.split("|")[1:-1]) + "|")
    rows = []
    for shape in ns.shapes:
        times = time_methods(names, shape, ns.device, autocast, ns.repeats, ns.warmup)
        mems = {} if ns.no_memory else {name: peak_memory(name, shape, ns.device, autocast) for name in names}
        for name in names:
            row = {
                "shape": shape,
                "method": name,
                "ms": 1000 * times[name],
                "time_ratio": times[name] / times[names[0]],
            }
            if mems:
                row["peak_MiB"] = mems[name] / 2**20
                row["mem_ratio"] = mems[name] / mems[names[0]] if mems[names[0]] > 0 else float("nan")
            rows.append(row)
            mem_cols = f"{row['peak_MiB']:9.1f} | {row['mem_ratio']:9.3f}" if mems else f"{'-':>9} | {'-':>9}"
            label = ", ".join(map(str, shape))
            print(
                f"| {label:<17} | {name:<16} | {row['ms']:10.1f} | {row['time_ratio']:10.3f} | {mem_cols} |",
                flush=True,
            )
    if ns.json:
        with open(ns.json, "w") as fh:
            json.dump({"device": ns.device, "autocast": ns.autocast, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
