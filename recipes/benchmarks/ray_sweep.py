"""The same sweep on the sequential runner and on a local Ray: wall time, and whether every run came out the same.

The grid: ResNet-20 on scikit-learn's digits (the image folder of ``recipes/vision/README.md``, "Evidence on real
data", written under ``--data_root`` when it is missing), the ``tce_paper`` protocol scaled down as there (6 epochs,
learning-rate drops at 3 and 4.5, batch 32, 1-pixel shifts), losses x seeds at noise 0. It runs
``hf-squareloss compare`` twice, each in a fresh folder, with ``OMP_NUM_THREADS=1``: first sequentially, then with
``--backend ray --num_cpus N --cpus_per_run 1``. It prints each sweep's wall time (the command, Ray's start and stop
included), the sum of its runs' times (each run's child process, from ``sweep_status.json``), their ratio, and per
run whether the validation and test metrics, the per-epoch history and the saved weights are identical.

    python recipes/benchmarks/ray_sweep.py                      # 4 losses x 2 seeds, local Ray of 2 CPUs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RECIPE = [
    "--validation_size",
    "250",
    "--per_device_train_batch_size",
    "32",
    "--shift_pixels",
    "1",
    "--use_cpu",
]


def write_digits(root: Path) -> None:
    """``root/digits/{train,test}/<digit>/<index>.png``: the 1,797 digits, a stratified 70/30 split."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = np.clip(np.rint(digits.images / 16.0 * 255), 0, 255).astype(np.uint8)
    train, test = train_test_split(
        np.arange(len(pixels)), test_size=0.3, random_state=0, stratify=digits.target
    )
    for split, ids in (("train", train), ("test", test)):
        for i in ids:
            folder = root / "digits" / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[i], mode="L").save(folder / f"{i:04d}.png")


def compare(ns: argparse.Namespace, root: Path, *backend: str) -> float:
    """Run the sweep into ``root`` (fresh); return its wall time."""
    shutil.rmtree(root, ignore_errors=True)
    command = [
        sys.executable, "-m", "hf_squareloss.cli", "compare", "--output_dir", str(root),
        "--model_name_or_path", "resnet20", "--tasks", "vision:digits", "--data_root", str(ns.data_root),
        "--noise_type", "uniform", "--protocols", "tce_paper", "--losses", *ns.losses,
        "--seeds", *map(str, ns.seeds), "--noise", "0", *backend,
        "--", *RECIPE, "--num_train_epochs", str(ns.epochs), "--lr_milestones", *map(str, ns.lr_milestones),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started = time.perf_counter()
    with open(root.parent / f"{root.name}.log", "w", encoding="utf-8") as log:
        done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed ({done.returncode}); see {root.parent / f'{root.name}.log'}"
        )
    return wall


def runs_of(root: Path) -> dict[str, dict[str, Any]]:
    return json.loads((root / "sweep_status.json").read_text())["runs"]


def same_run(a: Path, b: Path) -> tuple[bool, bool]:
    """(metrics and history equal, weights equal) of the runs in ``a`` and ``b``."""
    from safetensors.torch import load_file

    sa, sb = (json.loads((p / "run_summary.json").read_text()) for p in (a, b))
    keys = ("eval_metrics", "test_metrics", "history", "model_epoch")
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return all(sa[k] == sb[k] for k in keys), wa.keys() == wb.keys() and all(wa[k].equal(wb[k]) for k in wa)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_root", type=Path, default=Path("/tmp/vroot8"), help="holds digits/{train,test}")
    p.add_argument(
        "--output_dir", type=Path, default=Path("/tmp/hfsl_ray_bench"), help="the two sweep folders"
    )
    p.add_argument("--losses", nargs="+", default=["ce", "square", "tce", "softmax_mse"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--epochs", type=float, default=6)
    p.add_argument("--lr_milestones", nargs="+", type=float, default=[3, 4.5])
    p.add_argument("--num_cpus", type=int, default=2, help="CPUs of the local Ray (default: %(default)s)")
    ns = p.parse_args()
    if not (ns.data_root / "digits" / "train").is_dir():
        write_digits(ns.data_root)
    ns.output_dir.mkdir(parents=True, exist_ok=True)
    walls, loads = {}, {}
    for name, backend in (
        ("sequential", ()),
        ("ray", ("--backend", "ray", "--num_cpus", str(ns.num_cpus), "--cpus_per_run", "1")),
    ):
        before = os.getloadavg()[0]
        walls[name] = compare(ns, ns.output_dir / name, *backend)
        loads[name] = (before, os.getloadavg()[0])
    seq, ray = (ns.output_dir / n for n in ("sequential", "ray"))
    print(f"grid: {len(ns.losses)} losses x {len(ns.seeds)} seeds, ResNet-20 on digits, {ns.epochs:g} epochs")
    print("| sweep | wall s | sum of runs s | wall / sum | load before, after |")
    print("|---|---|---|---|---|")
    sums = {}
    for name in walls:
        sums[name] = sum(r["seconds"] for r in runs_of(ns.output_dir / name).values())
        print(
            f"| {name} | {walls[name]:.1f} | {sums[name]:.1f} | {walls[name] / sums[name]:.3f} | "
            f"{loads[name][0]:.2f}, {loads[name][1]:.2f} |"
        )
    print(f"ray wall / sequential wall: {walls['ray'] / walls['sequential']:.3f}")
    print("| run | seconds sequential | seconds ray | ray worker pid | metrics equal | weights equal |")
    print("|---|---|---|---|---|---|")
    ray_runs = runs_of(ray)
    for label, info in runs_of(seq).items():
        other = ray_runs[label]
        metrics, weights = same_run(seq / info["dir"], ray / other["dir"])
        print(
            f"| {label} | {info['seconds']:.1f} | {other['seconds']:.1f} | {other['worker'].get('pid')} | "
            f"{metrics} | {weights} |"
        )


if __name__ == "__main__":
    main()
