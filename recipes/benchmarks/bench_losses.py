"""Forward+backward time and peak memory of each loss against ``torch.nn.functional.cross_entropy``.

Both are measured in the same run on the same inputs and printed as ratios (loss / F.cross_entropy), so the numbers
mean something on any machine. Time: median of ``--repeats`` forward+backward passes after a warm-up, the losses
interleaved round by round in a new random order each round. Memory: bytes allocated beyond the inputs at the peak of one forward+backward pass;
on CUDA from ``torch.cuda.max_memory_allocated``, on CPU from the growth of the resident set's high-water mark
(``VmHWM``) in a fresh subprocess per measurement, so that no memory cached by an earlier step hides anything. Logits and labels are inputs; the gradient of the logits
(``N x C``) is part of every loss's peak.

    python recipes/benchmarks/bench_losses.py                      # N=8192, C in {2, 48, 1000, 32000}, CPU, all losses
    python recipes/benchmarks/bench_losses.py --losses squentropy gce sce nce_rce focal --classes 1000 32000
    python recipes/benchmarks/bench_losses.py --device cuda --dtype bfloat16 --autocast
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

from hf_squareloss import LossConfig, loss_types

# the two implementations of TCE, forced whatever the number of classes (to choose FUSED_TCE_MIN_CLASSES)
TCE_PATHS = {"tce:log_softmax": 10**12, "tce:fused": 2}


def _tce_path(threshold: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    from hf_squareloss import functional

    def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        saved = functional.FUSED_TCE_MIN_CLASSES
        functional.FUSED_TCE_MIN_CLASSES = threshold
        try:
            return functional.tamed_cross_entropy(x, y, alpha=1.5)
        finally:
            functional.FUSED_TCE_MIN_CLASSES = saved

    return run


def _loss_fn(name: str, num_classes: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "F.cross_entropy":
        return lambda x, y: F.cross_entropy(x.float() if x.dtype != torch.float64 else x, y)
    if name in TCE_PATHS:
        return _tce_path(TCE_PATHS[name])
    config = LossConfig.resolve(name, num_classes=num_classes)
    return lambda x, y: config(x, y)


def _inputs(n: int, c: int, device: str, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    logits = (torch.randn(n, c, generator=g) * 2).to(device=device, dtype=dtype).requires_grad_(True)
    labels = torch.randint(0, c, (n,), generator=g).to(device)
    return logits, labels


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _step(fn, logits, labels, device: str, autocast: bool) -> None:
    logits.grad = None
    with torch.autocast(device_type=device.split(":")[0], dtype=logits.dtype, enabled=autocast):
        loss = fn(logits, labels)
    loss.backward()


def time_losses(names, n, c, device, dtype, repeats, autocast) -> dict[str, float]:
    logits, labels = _inputs(n, c, device, dtype)
    fns = {name: _loss_fn(name, c) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for fn in fns.values():  # warm-up
        _step(fn, logits, labels, device, autocast)
    # a new random order each round: neither the first place nor the loss run just before (whose freed memory
    # the allocator may or may not have returned to the system) is the same for every round
    rng = random.Random(0)
    order = list(fns)
    for _ in range(repeats):
        rng.shuffle(order)
        for name in order:
            fn = fns[name]
            _sync(device)
            start = time.perf_counter()
            _step(fn, logits, labels, device, autocast)
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    """Reset this process's resident-set high-water mark (VmHWM) to its current size (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def peak_memory_here(name, n, c, device, dtype, autocast) -> int:
    """Bytes allocated beyond the inputs at the peak of one forward+backward (this process)."""
    logits, labels = _inputs(n, c, device, dtype)
    fn = _loss_fn(name, c)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _step(fn, logits, labels, device, autocast)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    _reset_peak_rss()  # forget the temporaries of the input creation
    base = _status_kb("VmRSS")
    _step(fn, logits, labels, device, autocast)
    return _status_kb("VmHWM") - base


def peak_memory(name, n, c, device, dtype, autocast) -> int:
    if device.startswith("cuda"):
        return peak_memory_here(name, n, c, device, dtype, autocast)
    cmd = [
        sys.executable,
        __file__,
        "--_memory-probe",
        name,
        "-n",
        str(n),
        "--classes",
        str(c),
        "--dtype",
        str(dtype).removeprefix("torch."),
        *(["--autocast"] if autocast else []),
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    return int(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=8192, help="items per batch (default: %(default)s)")
    p.add_argument("--classes", type=int, nargs="+", default=[2, 48, 1000, 32000])
    p.add_argument(
        "--losses",
        nargs="+",
        default=loss_types(),
        choices=[*loss_types(), *TCE_PATHS],
        help="losses to compare (default: all); tce:log_softmax and tce:fused force one TCE implementation",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16", "float64"])
    p.add_argument("--autocast", action="store_true", help="run under torch.autocast with --dtype logits")
    p.add_argument("--repeats", type=int, default=20, help="timed rounds (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    p.add_argument("--json", default=None, help="also write the table as JSON here")
    p.add_argument(
        "--target",
        type=float,
        default=1.5,
        help="time-ratio target: no loss slower than this times F.cross_entropy ... (default: %(default)s)",
    )
    p.add_argument(
        "--target-from", type=int, default=1000, help="... from this many classes on (default: %(default)s)"
    )
    p.add_argument("--_memory-probe", dest="probe", default=None, help=argparse.SUPPRESS)
    ns = p.parse_args(argv)
    dtype = getattr(torch, ns.dtype)
    if ns.threads:
        torch.set_num_threads(ns.threads)
    if ns.probe:
        print(peak_memory_here(ns.probe, ns.n, ns.classes[0], ns.device, dtype, ns.autocast))
        return 0
    names = ["F.cross_entropy", *ns.losses]
    print(
        f"N={ns.n}, device={ns.device}, dtype={ns.dtype}{' (autocast)' if ns.autocast else ''}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; ratios are loss / F.cross_entropy"
    )
    header = f"| {'C':>6} | {'loss':<12} | {'fwd+bwd ms':>10} | {'time ratio':>10} | {'peak MB':>9} | {'mem ratio':>9} |"
    print(header)
    print("|" + "|".join("-" * (len(col)) for col in header.split("|")[1:-1]) + "|")
    rows = []
    for c in ns.classes:
        times = time_losses(names, ns.n, c, ns.device, dtype, ns.repeats, ns.autocast)
        mems = (
            {}
            if ns.no_memory
            else {name: peak_memory(name, ns.n, c, ns.device, dtype, ns.autocast) for name in names}
        )
        for name in names:
            row = {
                "C": c,
                "loss": name,
                "ms": 1000 * times[name],
                "time_ratio": times[name] / times[names[0]],
            }
            if mems:
                row["peak_MB"] = mems[name] / 2**20
                row["mem_ratio"] = mems[name] / mems[names[0]] if mems[names[0]] > 0 else float("nan")
            rows.append(row)
            mem_cols = f"{row['peak_MB']:9.1f} | {row['mem_ratio']:9.2f}" if mems else f"{'-':>9} | {'-':>9}"
            print(f"| {c:>6} | {name:<12} | {row['ms']:10.2f} | {row['time_ratio']:10.2f} | {mem_cols} |")
    checked = [r for r in rows if r["C"] >= ns.target_from and r["loss"] != names[0]]
    if checked:
        missed = [r for r in checked if r["time_ratio"] > ns.target]
        worst = max(checked, key=lambda r: r["time_ratio"])
        print(
            f"\ntarget: every loss <= {ns.target:g}x F.cross_entropy's time from C = {ns.target_from}: "
            + (
                "met"
                if not missed
                else "MISSED by " + ", ".join(f"{r['loss']} at C={r['C']}" for r in missed)
            )
            + f" (slowest: {worst['loss']} at C={worst['C']}, {worst['time_ratio']:.2f}x)"
        )
    if ns.json:
        with open(ns.json, "w") as fh:
            json.dump(
                {"n": ns.n, "device": ns.device, "dtype": ns.dtype, "autocast": ns.autocast, "rows": rows},
                fh,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
