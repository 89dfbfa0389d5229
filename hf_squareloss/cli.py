"""The ``hf-squareloss`` command: ``demo`` (and the other jobs registered below)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .registry import loss_types


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="compare losses on scikit-learn's bundled 8x8 digits, clean and with label noise (offline, ~2 min)",
        description="Train a tiny ViT from scratch on scikit-learn's 8x8 digits with each loss, with clean labels "
        "and with symmetric label noise, over several seeds; print and save a table of test accuracy.",
    )
    p.add_argument(
        "--output-dir", default="demo_output", help="where results.json/.md/.png go (default: %(default)s)"
    )
    p.add_argument(
        "--losses",
        nargs="+",
        default=["ce", "square", "tce"],
        choices=loss_types(),
        metavar="LOSS",
        help=f"loss types to compare, from {loss_types()} (default: %(default)s)",
    )
    p.add_argument(
        "--noise",
        nargs="+",
        type=float,
        default=[0.0, 0.4],
        metavar="RATE",
        help="symmetric label-noise rates of the training labels (default: %(default)s)",
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="seeds (default: %(default)s)")
    p.add_argument("--epochs", type=float, default=40, help="training epochs per run (default: %(default)s)")
    p.add_argument(
        "--max-train-samples", type=int, default=None, help="truncate the training split (for smoke runs)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_run_demo)


def _run_demo(ns: argparse.Namespace) -> int:
    from .demo import DemoConfig, run_demo

    cfg = DemoConfig(
        losses=tuple(ns.losses),
        noise_rates=tuple(ns.noise),
        seeds=tuple(ns.seeds),
        epochs=ns.epochs,
        max_train_samples=ns.max_train_samples,
        output_dir=ns.output_dir,
        threads=ns.threads,
    )
    try:
        cfg.validate()
    except ValueError as err:
        print(f"hf-squareloss demo: {err}", file=sys.stderr)
        return 2
    run_demo(cfg, progress=not ns.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="hf-squareloss", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    return int(ns.func(ns) or 0)


if __name__ == "__main__":
    sys.exit(main())
