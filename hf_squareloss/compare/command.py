"""``hf-squareloss compare``: run the comparison grid, each task through its family's recipe, then aggregate it."""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
import time
from pathlib import Path

from ..noise import NOISE_TYPES
from ..registry import ALL, loss_types, select_losses
from ..runs.families import family_of
from .backends import BACKENDS, BackendOptions, check_cluster_paths
from .grid import SweepSpec, accelerate_form, parse_per_task, single_process_form

__all__ = ["add_compare_parser", "run_compare"]

_EPILOG = """\
Arguments after `--` go to every run of the recipe (see `python -m hf_squareloss.glue.run -h` for GLUE tasks,
`python -m hf_squareloss.vision.run -h` for image tasks), e.g.
  hf-squareloss compare --output_dir sweeps/glue --model_name_or_path MODEL --tasks mrpc sst2 \\
      --data_root ../shared/data/glue --max_train_samples sst2=8000 -- --num_train_epochs 5 --learning_rate 5e-5

Rerunning the same command continues an interrupted sweep: finished runs are kept, a half-finished run resumes
from its last checkpoint. `--aggregate_only` rebuilds the tables and plots from the finished runs.

To run the grid's runs side by side, on this machine's cores or on a cluster, use Ray (pip install "hf-squareloss[ray]"):
  hf-squareloss compare --backend ray --cpus_per_run 1 ...                  # a local Ray on this machine's cores
  hf-squareloss compare --backend ray --ray_address HEAD:6379 --output_dir /shared/sweeps/x ...   # a cluster
On a cluster the sweep folder must be on a filesystem every node mounts at the same path (NFS, say).

Or run parts of a grid side by side by hand, each with its own --output_dir and the same settings (say --seeds 0 1
in sweeps/a, --seeds 2 in sweeps/b), then report them as one:
  hf-squareloss compare --output_dir sweeps/a ... --seeds 0 1 2 --aggregate_only --include_sweeps sweeps/b
"""


def add_compare_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``compare`` subcommand on the ``hf-squareloss`` parser."""
    p = subparsers.add_parser(
        "compare",
        help="run a grid of tasks (GLUE, images) x losses x label-noise rates x seeds, resumably, and report it",
        description="Run each task's recipe (GLUE's, the image recipe) over tasks x loss types x label-noise rates "
        "x seeds, one run after another, and aggregate the results into results.csv/json, RESULTS.md and PNG "
        "plots.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--output_dir", "--output-dir", required=True, help="sweep folder (one sub-folder per run)"
    )
    p.add_argument(
        "--model_name_or_path",
        "--model-name-or-path",
        required=True,
        help="model to fine-tune; for image tasks also resnet20/resnet32/resnet56 (a CIFAR ResNet from scratch)",
    )
    p.add_argument(
        "--base_model_id",
        "--base-model-id",
        default=None,
        help="Hub id of that model, for the model cards, when --model_name_or_path is a local folder",
    )
    p.add_argument(
        "--tasks",
        nargs="+",
        required=True,
        metavar="TASK",
        help="GLUE tasks (mrpc sst2...) and image tasks vision:<name> (vision:cifar10; with --data_root, the "
        "image folders <data_root>/<name>/train, validation, test)",
    )
    p.add_argument(
        "--losses",
        nargs="+",
        default=["ce", "square", "tce", "softmax_mse"],
        choices=[*loss_types(), ALL],
        metavar="LOSS",
        help=f"loss types, from {loss_types()}, or '{ALL}' for every one (default: %(default)s)",
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default: %(default)s)")
    p.add_argument(
        "--noise",
        nargs="+",
        type=float,
        default=[0.0, 0.4],
        metavar="ETA",
        help="label-noise rates (default: %(default)s)",
    )
    p.add_argument(
        "--noise_type",
        "--noise-type",
        default="symmetric",
        choices=list(NOISE_TYPES),
        help="label-noise type of every run (default: %(default)s)",
    )
    p.add_argument(
        "--protocols",
        nargs="+",
        default=["early_stopping"],
        metavar="PROTOCOL",
        help="early_stopping, same_epochs (each non-ce loss for the epochs of the ce run with the same "
        "noise and seed), tce_paper (image tasks: the TCE paper's schedule, model of the best validation epoch) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--early_stopping_patience",
        "--early-stopping-patience",
        type=int,
        default=None,
        metavar="N",
        help="patience of the early_stopping runs (default: the recipe's, 5)",
    )
    p.add_argument(
        "--data_root",
        "--data-root",
        default=None,
        help="folder with GLUE's task folders (MRPC/, SST-2/...) in the original TSV layout, and the image "
        "tasks' folders (<name>/train...); default: the Hub",
    )
    p.add_argument(
        "--max_train_samples",
        "--max-train-samples",
        nargs="+",
        default=None,
        metavar="[TASK=]N",
        help="training subset, for every task (N) or per task (sst2=8000)",
    )
    p.add_argument(
        "--max_eval_samples",
        "--max-eval-samples",
        nargs="+",
        default=None,
        metavar="[TASK=]N",
        help="evaluation subset, for every task (N) or per task (qqp=1000)",
    )
    p.add_argument(
        "--launcher",
        default=None,
        help="command that starts each run instead of this Python, e.g. 'accelerate launch --num_processes 8'",
    )
    p.add_argument(
        "--report_dir",
        "--report-dir",
        default=None,
        help="where the tables and plots go (default: the sweep folder)",
    )
    p.add_argument("--title", default=None, help="title of RESULTS.md")
    p.add_argument("--dry_run", "--dry-run", action="store_true", help="print the runs' commands and exit")
    p.add_argument(
        "--aggregate_only", "--aggregate-only", action="store_true", help="only rebuild the report"
    )
    p.add_argument(
        "--include_sweeps",
        "--include-sweeps",
        nargs="+",
        default=[],
        metavar="DIR",
        help="other sweep folders with the same shared settings whose runs join the report: a grid split over "
        "processes or machines (say, one folder per seed), reported as one",
    )
    p.add_argument(
        "--verbose", action="store_true", help="echo the runs' whole output, not only progress lines"
    )
    _add_backend_arguments(p)
    p.add_argument("recipe_args", nargs="*", help="after `--`: arguments for every run of the recipe")
    p.set_defaults(func=run_compare)
    return p


def _add_backend_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where the runs run")
    g.add_argument(
        "--backend",
        default="sequential",
        choices=list(BACKENDS),
        help="sequential: one run after another in this process (default); ray: each run a Ray task, side by side "
        "on a local Ray (this machine's cores) or on a cluster (--ray_address); needs the ray extra",
    )
    g.add_argument(
        "--ray_address",
        "--ray-address",
        default=None,
        metavar="ADDRESS",
        help="join this Ray cluster (HEAD:6379, auto, ray://HEAD:10001) instead of starting a local Ray; "
        "--output_dir and --data_root must then be absolute paths every node can read and write",
    )
    g.add_argument(
        "--num_cpus",
        "--num-cpus",
        type=int,
        default=None,
        metavar="N",
        help="CPUs of the local Ray (default: this machine's)",
    )
    g.add_argument(
        "--cpus_per_run",
        "--cpus-per-run",
        type=float,
        default=1.0,
        metavar="N",
        help="CPUs Ray reserves for each run; its OMP_NUM_THREADS and MKL_NUM_THREADS (default: %(default)s)",
    )
    g.add_argument(
        "--gpus_per_run",
        "--gpus-per-run",
        type=float,
        default=0.0,
        metavar="N",
        help="GPUs Ray reserves for each run (default: %(default)s)",
    )
    g.add_argument(
        "--max_retries",
        "--max-retries",
        type=int,
        default=2,
        metavar="N",
        help="attempts of a run after the first when it was killed by a signal or its Ray worker or node died; "
        "each resumes from the run's last checkpoint. A run that fails by itself is not retried "
        "(default: %(default)s)",
    )


def _backend(ns: argparse.Namespace) -> BackendOptions:
    """The backend options; on a cluster, the paths checked."""
    options = BackendOptions(
        name=ns.backend,
        ray_address=ns.ray_address,
        num_cpus=ns.num_cpus,
        cpus_per_run=ns.cpus_per_run,
        gpus_per_run=ns.gpus_per_run,
        max_retries=ns.max_retries,
    )
    if options.name == "ray" and importlib.util.find_spec("ray") is None:
        raise ValueError('--backend ray needs Ray: pip install "hf-squareloss[ray]"')
    if options.ray_address:
        check_cluster_paths(ns.output_dir, ns.data_root, ns.model_name_or_path, ns.recipe_args)
    return options


def _spec(ns: argparse.Namespace) -> SweepSpec:
    return SweepSpec(
        model_name_or_path=ns.model_name_or_path,
        tasks=ns.tasks,
        losses=select_losses(ns.losses),
        seeds=ns.seeds,
        noise_rates=ns.noise,
        noise_type=ns.noise_type,
        protocols=ns.protocols,
        data_root=str(Path(ns.data_root).expanduser().resolve()) if ns.data_root else None,
        max_train_samples=parse_per_task(ns.max_train_samples, "max_train_samples"),
        max_eval_samples=parse_per_task(ns.max_eval_samples, "max_eval_samples"),
        recipe_args=ns.recipe_args,
        early_stopping_patience=ns.early_stopping_patience,
        base_model_id=ns.base_model_id,
    )


def _check_recipe_args(spec: SweepSpec, root: Path) -> None:
    """Parse the arguments of the first run of each protocol and task family with its recipe's parser, so that a
    typo or an inconsistent setting fails before any run."""
    firsts = {(run.protocol, family_of(run.task).name): run for run in reversed(spec.runs())}
    for run in firsts.values():
        try:
            family_of(run.task).parse_args(spec.recipe_argv(run, root))
        except SystemExit as err:  # argparse has printed why
            raise ValueError(f"the recipe refuses these arguments: {shlex.join(spec.recipe_args)}") from err
        except ValueError as err:
            raise ValueError(
                f"the recipe refuses the arguments of its {run.protocol} runs ({shlex.join(spec.recipe_args)}): {err}"
            ) from err


def run_compare(ns: argparse.Namespace) -> int:
    from .runner import run_sweep

    prog = "hf-squareloss compare"
    try:
        spec = _spec(ns)
        backend = _backend(ns)
        root = Path(ns.output_dir).expanduser().resolve()
        if not ns.aggregate_only:
            _check_recipe_args(spec, root)
    except ValueError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    if ns.dry_run:
        for run in spec.runs():
            argv = spec.recipe_argv(run, root)
            print(
                f"# {run.label}\n{shlex.join(single_process_form(argv, run.module))}\n"
                f"# {accelerate_form(argv, module=run.module)}"
            )
        print(f"# {len(spec.runs())} runs")
        return 0
    command = shlex.join(["hf-squareloss", *sys.argv[1:]]) if sys.argv[1:2] == ["compare"] else ""
    code = 0
    if not ns.aggregate_only:
        started = time.perf_counter()
        try:
            outcome = run_sweep(
                spec, root, launcher=ns.launcher, verbose=ns.verbose, command=command, backend=backend
            )
        except ValueError as err:
            print(f"{prog}: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130
        retried = f", {len(outcome.retried)} retried" if outcome.retried else ""
        print(
            f"sweep done in {time.perf_counter() - started:.0f}s ({backend.name}): {len(outcome.finished)} run(s) "
            f"finished now, {len(outcome.kept)} kept, {len(outcome.failed)} failed, {len(outcome.skipped)} "
            f"skipped{retried}"
        )
        for label in outcome.failed:
            print(f"  failed: {label}", file=sys.stderr)
        code = 0 if outcome.ok else 1
    from .report import write_report

    report_dir = Path(ns.report_dir).expanduser().resolve() if ns.report_dir else root
    try:
        written = write_report(root, report_dir, spec=spec, title=ns.title, include=ns.include_sweeps)
    except ValueError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(p) for p in written))
    return code
