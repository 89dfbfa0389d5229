"""The ``hf-squareloss`` command: ``demo`` (and the other jobs registered below)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .compare.command import add_compare_parser
from .registry import ALL, loss_types, select_losses


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="compare losses on scikit-learn's bundled 8x8 digits, clean and with label noise (offline, ~2 min)",
        description="Train a tiny ViT from scratch on scikit-learn's 8x8 digits with each loss, with clean labels "
        "and with symmetric label noise, over several seeds; print and save tables of test accuracy and of "
        "calibration (ECE, NLL, Brier score before and after temperature scaling).",
    )
    p.add_argument(
        "--output-dir",
        default="demo_output",
        help="where results.json/.md/.png and calibration.png go (default: %(default)s)",
    )
    p.add_argument(
        "--losses",
        nargs="+",
        default=["ce", "square", "tce"],
        choices=[*loss_types(), ALL],
        metavar="LOSS",
        help=f"loss types to compare, from {loss_types()}, or '{ALL}' for every one (default: %(default)s; "
        f"'{ALL}' takes about {len(loss_types()) / 3:.0f}x as long)",
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
        losses=tuple(select_losses(ns.losses)),
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


def _add_convergence(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convergence",
        help="say whether finished runs had finished learning when their training ended",
        description="Apply the convergence rule (docs/runtime.md) to every finished run under the given folders "
        "or files: recipe runs (run_summary.json, or the summaries a report copies under runs/) and ASR runs "
        "(results.json). Prints one line per run and a count; exits 1 when a run was still improving.",
    )
    p.add_argument("paths", nargs="+", help="run or sweep folders, report folders, or summary files")
    p.set_defaults(func=_run_convergence)


def _run_convergence(ns: argparse.Namespace) -> int:
    from .runs.convergence import RULE, verdicts

    try:
        found = verdicts(ns.paths)
    except ValueError as err:
        print(f"hf-squareloss convergence: {err}", file=sys.stderr)
        return 2
    if not found:
        print("hf-squareloss convergence: no finished run found", file=sys.stderr)
        return 2
    words = {True: "converged", False: "STILL IMPROVING", None: "undecided"}
    for path, verdict in found:
        print(f"{words[verdict.converged]:<16} {path}: {verdict.reason}")
    counts = {word: sum(v.converged is key for _, v in found) for key, word in words.items()}
    print(
        f"{len(found)} runs: {counts['converged']} converged, {counts['STILL IMPROVING']} still improving, "
        f"{counts['undecided']} undecided. Rule: {RULE}."
    )
    return 1 if counts["STILL IMPROVING"] else 0


def _add_card_and_push(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "card",
        help="write the model card (README.md) of a finished run or sweep folder",
        description="Write README.md into a finished recipe run folder (GLUE, images) or ASR run folder, or a "
        "comparison sweep folder "
        "(or its report folder): YAML metadata with a model-index and the loss block, the loss formula, how to "
        "read the outputs, hyper-parameters, results and citations.",
    )
    p.add_argument(
        "folder",
        help="a recipe run folder (run_summary.json), an ASR run folder (results.json), a sweep folder "
        "(sweep.json) or a sweep's report folder (results.json)",
    )
    p.add_argument("--base-model", default=None, help="Hub id of the model the run started from")
    p.add_argument("--output", default=None, help="write the card to this file instead of FOLDER/README.md")
    p.set_defaults(func=_run_card)
    p = sub.add_parser(
        "push",
        help="push a finished run or sweep folder (with its card) to the Hugging Face Hub",
        description="Write the model card if missing, then create the repository and upload the folder "
        "(checkpoints excluded). Nothing local is changed when the push fails.",
    )
    p.add_argument("folder")
    p.add_argument("--repo-id", required=True, help="user-or-org/name on the Hub")
    p.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the saved login)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument(
        "--base-model", default=None, help="Hub id of the model the run started from (for the card)"
    )
    p.add_argument("--rewrite-card", action="store_true", help="write README.md again even if it exists")
    p.set_defaults(func=_run_push)


def _write_card(folder: str, base_model: str | None, output: str | None = None) -> str:
    from .folder_card import write_card

    return str(write_card(folder, base_model=base_model, output=output))


def _run_card(ns: argparse.Namespace) -> int:
    try:
        print(f"wrote {_write_card(ns.folder, ns.base_model, ns.output)}")
    except ValueError as err:
        print(f"hf-squareloss card: {err}", file=sys.stderr)
        return 2
    return 0


def _run_push(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from .hub import HubPushError, push_folder

    try:
        if ns.rewrite_card or not (Path(ns.folder) / "README.md").is_file():
            print(f"wrote {_write_card(ns.folder, ns.base_model)}")
        url = push_folder(ns.folder, ns.repo_id, token=ns.token, private=ns.private or None)
    except (ValueError, HubPushError) as err:
        print(f"hf-squareloss push: {err}", file=sys.stderr)
        return 1
    print(f"pushed {ns.folder} to {ns.repo_id}: {url}")
    return 0


def _add_env(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "env",
        help="print the versions, build and devices to paste into a bug report; exit 1 if the set cannot work",
        description="Print Python, hf-squareloss, torch (and its CUDA/CPU build), torchaudio, transformers, "
        "datasets, accelerate, evaluate, huggingface_hub, speechbrain and soundfile versions, the devices torch "
        "sees, and whether torchaudio and SpeechBrain import. A torchaudio that cannot load with the installed "
        "torch is named with the pair to install instead, and the command exits 1.",
    )
    p.set_defaults(func=_run_env)


def _run_env(ns: argparse.Namespace) -> int:
    from .environment import environment_report

    report, problems = environment_report()
    print(report)
    return 1 if problems else 0


def _add_losses(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "losses",
        help="list the registered losses, their parameters and defaults",
        description="The registered losses: a line each, or, for the named ones, the formula, what the trained "
        "logits mean, each parameter with its default, its TrainingArguments flag and its SpeechBrain YAML key, "
        "and the references. Read from the registry, so a loss registered by a plugin is listed too.",
    )
    p.add_argument(
        "names", nargs="*", metavar="LOSS", help="loss types to describe in full (default: list all)"
    )
    p.add_argument("--json", action="store_true", help="print every field as JSON (with the BibTeX)")
    p.set_defaults(func=_run_losses)


def _run_losses(ns: argparse.Namespace) -> int:
    from .catalogue import format_catalogue, loss_catalogue

    try:
        entries = loss_catalogue(select_losses(ns.names) if ns.names else None)
    except ValueError as err:
        print(f"hf-squareloss losses: {err}", file=sys.stderr)
        return 2
    print(format_catalogue(entries, full=bool(ns.names), as_json=ns.json))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="hf-squareloss", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo(sub)
    add_compare_parser(sub)
    _add_card_and_push(sub)
    _add_convergence(sub)
    _add_losses(sub)
    _add_env(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .environment import torchaudio_guard

    ns = build_parser().parse_args(argv)
    try:
        with torchaudio_guard():
            return int(ns.func(ns) or 0)
    except ImportError as err:
        print(f"hf-squareloss {ns.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
