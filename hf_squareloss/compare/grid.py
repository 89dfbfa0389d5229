"""The comparison grid: tasks x protocols x loss types x label-noise rates x seeds, and each run's command.

Folder layout of a sweep (``root`` is ``hf-squareloss compare --output_dir``)::

    root/
      sweep.json               the grid and the shared recipe arguments (written at the first start)
      sweep_status.json        progress: finished / failed runs, per-run wall time, sessions
      commands.sh              every run's command, single-process and ``accelerate launch`` forms
      results.csv, results.json, summary.csv, RESULTS.md, *.png   the aggregated results
      runs/<task>/<protocol>/<loss>/noise<eta>/seed<s>.json        copies of the per-run summaries
      <task>/<protocol>/<loss>/noise<eta>/seed<s>/                 one recipe output folder per run
          (run_args.json, run_summary.json, all_results.json, model..., see hf_squareloss.glue.outputs)
          sweep_run.json       the command the sweep gave this run
          run.log              the run's full output

``<eta>`` is the noise rate as ``0``, ``0.2``, ``0.4``...; ``<protocol>`` is ``early_stopping``, ``same_epochs``
or (image tasks) ``tce_paper``. A ``same_epochs`` run of loss L takes as reference the ``early_stopping`` run of
``ce`` in the same task, noise rate and seed. An image task ``vision:<name>`` lives in the folder
``vision-<name>`` and runs the image-classification recipe (see :mod:`.tasks`).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..registry import get_loss_spec
from .tasks import GLUE_RECIPE, canonical_task, is_vision, recipe_module

__all__ = [
    "CONTROLLED_FLAGS",
    "RECIPE_MODULE",
    "RunSpec",
    "SweepSpec",
    "accelerate_form",
    "parse_per_task",
]

RECIPE_MODULE = GLUE_RECIPE
SWEEP_PROTOCOLS = ("early_stopping", "same_epochs", "tce_paper")
VISION_ONLY_PROTOCOLS = ("tce_paper",)
REFERENCE_LOSS = "ce"


def reference_protocol(protocol: str) -> str:
    """The protocol of the ``ce`` runs that cells of ``protocol`` are compared with."""
    return "early_stopping" if protocol == "same_epochs" else protocol


# flags the sweep sets for every run; passing them as shared recipe arguments would be ambiguous
CONTROLLED_FLAGS = (
    "--model_name_or_path",
    "--task_name",
    "--data_dir",
    "--output_dir",
    "--do_train",
    "--do_eval",
    "--loss_type",
    "--seed",
    "--noise_seed",
    "--label_noise",
    "--label_noise_type",
    "--protocol",
    "--reference_run",
    "--early_stopping_patience",
    "--max_train_samples",
    "--max_eval_samples",
    "--base_model_id",
    # image tasks
    "--model_type",
    "--dataset_name",
    "--train_dir",
    "--validation_dir",
    "--test_dir",
    "--do_predict",
    "--max_predict_samples",
)


def _noise_name(rate: float) -> str:
    return f"noise{rate:g}"


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid."""

    task: str
    protocol: str
    loss_type: str
    noise_rate: float
    seed: int

    @property
    def relpath(self) -> Path:
        return Path(
            self.task.replace(":", "-"),
            self.protocol,
            self.loss_type,
            _noise_name(self.noise_rate),
            f"seed{self.seed}",
        )

    @property
    def module(self) -> str:
        """The recipe that runs it (``python -m <module>``)."""
        return recipe_module(self.task)

    @property
    def label(self) -> str:
        return f"{self.task} {self.protocol} {self.loss_type} noise={self.noise_rate:g} seed={self.seed}"

    def reference(self) -> RunSpec | None:
        """The run whose epochs a ``same_epochs`` run matches."""
        if self.protocol != "same_epochs":
            return None
        return RunSpec(self.task, "early_stopping", REFERENCE_LOSS, self.noise_rate, self.seed)


def parse_per_task(values: Sequence[str] | None, name: str) -> dict[str, int]:
    """``["sst2=8000", "500"]`` -> ``{"sst2": 8000, "*": 500}`` (``*``: every other task)."""
    out: dict[str, int] = {}
    for value in values or ():
        key, sep, number = value.rpartition("=")
        task = canonical_task(key) if sep else "*"
        try:
            count = int(number)
        except ValueError:
            raise ValueError(f"--{name}: expected N or TASK=N, got {value!r}") from None
        if count < 1:
            raise ValueError(f"--{name}: {value!r} must be >= 1")
        out[task] = count
    return out


@dataclass
class SweepSpec:
    """What ``hf-squareloss compare`` runs."""

    model_name_or_path: str
    tasks: Sequence[str]
    losses: Sequence[str] = ("ce", "square", "tce", "softmax_mse")
    seeds: Sequence[int] = (0, 1, 2)
    noise_rates: Sequence[float] = (0.0, 0.4)
    noise_type: str = "symmetric"
    protocols: Sequence[str] = ("early_stopping",)
    data_root: str | None = None
    """Folder holding GLUE's task folders (``MRPC/``, ``SST-2/``...) in their original layout; None: the Hub."""
    max_train_samples: Mapping[str, int] = field(default_factory=dict)
    max_eval_samples: Mapping[str, int] = field(default_factory=dict)
    recipe_args: Sequence[str] = ()
    """Arguments given to every run (learning rate, epochs, batch size, ``--tce_alpha``...)."""
    early_stopping_patience: int | None = None
    """Patience of the ``early_stopping`` runs (the recipe's default when None); ``same_epochs`` runs take none."""
    base_model_id: str | None = None
    """Hub id of the model fine-tuned, for the model cards (when ``model_name_or_path`` is a local folder)."""

    def __post_init__(self) -> None:
        self.tasks = [canonical_task(t) for t in self.tasks]
        for task in self.tasks:
            if task == "stsb":
                raise ValueError(f"{task} is a regression task; the comparison covers classification tasks")
        for protocol in VISION_ONLY_PROTOCOLS:
            glue = [t for t in self.tasks if not is_vision(t)]
            if protocol in self.protocols and glue:
                raise ValueError(f"the {protocol} protocol is for image tasks (vision:<name>), not {glue}")
        for loss in self.losses:
            get_loss_spec(loss)
        unknown = [p for p in self.protocols if p not in SWEEP_PROTOCOLS]
        if unknown:
            raise ValueError(f"unknown protocol(s) {unknown}; the sweep knows {list(SWEEP_PROTOCOLS)}")
        if "same_epochs" in self.protocols and (
            REFERENCE_LOSS not in self.losses or "early_stopping" not in self.protocols
        ):
            raise ValueError(
                "the same_epochs protocol matches the early_stopping run of 'ce': include 'ce' in the losses "
                "and 'early_stopping' in the protocols"
            )
        for rate in self.noise_rates:
            if not 0.0 <= float(rate) < 1.0:
                raise ValueError(f"noise rates must be in [0, 1), got {rate}")
        for name, items in (
            ("tasks", self.tasks),
            ("losses", self.losses),
            ("seeds", self.seeds),
            ("noise rates", self.noise_rates),
            ("protocols", self.protocols),
        ):
            if not items:
                raise ValueError(f"the grid needs at least one of {name}")
            if len(set(items)) != len(items):
                raise ValueError(f"repeated {name}: {list(items)}")
        for arg in self.recipe_args:
            flag = arg.split("=", 1)[0]
            if flag in CONTROLLED_FLAGS:
                raise ValueError(
                    f"{flag} is set by the sweep for each run; use the compare options instead "
                    "(--tasks, --losses, --seeds, --noise, --data_root, --max_train_samples...)"
                )
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ValueError(f"early_stopping_patience must be >= 1, got {self.early_stopping_patience}")
        self.losses = list(self.losses)
        self.seeds = [int(s) for s in self.seeds]
        self.noise_rates = [float(r) for r in self.noise_rates]
        self.protocols = list(self.protocols)
        self.recipe_args = list(self.recipe_args)
        self.max_train_samples = dict(self.max_train_samples)
        self.max_eval_samples = dict(self.max_eval_samples)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def runs(self) -> list[RunSpec]:
        """Every run, in order: task by task; within a task the early_stopping runs (hence the ``ce``
        references) before the same_epochs runs; noise rate, then seed, then loss innermost, so that an
        interrupted sweep has complete comparisons for the cells it finished."""
        out = []
        for task in self.tasks:
            for protocol in (p for p in SWEEP_PROTOCOLS if p in self.protocols):
                for rate in self.noise_rates:
                    for seed in self.seeds:
                        for loss in self.losses:
                            if protocol == "same_epochs" and loss == REFERENCE_LOSS:
                                continue  # the reference itself
                            out.append(RunSpec(task, protocol, loss, rate, seed))
        return out

    def _per_task(self, table: Mapping[str, int], task: str) -> int | None:
        return table.get(task, table.get("*"))

    def _vision_argv(self, task: str) -> list[str]:
        """Model and data flags of an image task (see :mod:`.tasks`)."""
        from ..vision import ARCHITECTURES

        name = task.split(":", 1)[1]
        model = "--model_type" if self.model_name_or_path in ARCHITECTURES else "--model_name_or_path"
        argv = [model, self.model_name_or_path, "--task_name", task]
        if self.data_root is None:
            return [*argv, "--dataset_name", name, "--do_predict"]
        folder = Path(self.data_root) / name
        argv += ["--dataset_name", "imagefolder", "--train_dir", str(folder / "train")]
        for split in ("validation", "test"):
            if (folder / split).is_dir():
                argv += [f"--{split}_dir", str(folder / split)]
        return argv + (["--do_predict"] if (folder / "test").is_dir() else [])

    def recipe_argv(self, run: RunSpec, root: Path) -> list[str]:
        """The recipe's arguments for ``run`` inside the sweep folder ``root``."""
        if is_vision(run.task):
            head = self._vision_argv(run.task)
        else:
            head = ["--model_name_or_path", self.model_name_or_path, "--task_name", run.task]
        argv = [
            *head,
            "--output_dir",
            str(root / run.relpath),
            "--do_train",
            "--do_eval",
            "--loss_type",
            run.loss_type,
            "--seed",
            str(run.seed),
            "--noise_seed",
            str(run.seed),
            "--label_noise",
            f"{run.noise_rate:g}",
            "--label_noise_type",
            self.noise_type,
            "--protocol",
            run.protocol,
        ]
        reference = run.reference()
        if reference is not None:
            argv += ["--reference_run", str(root / reference.relpath)]
        if run.protocol == "early_stopping" and self.early_stopping_patience is not None:
            argv += ["--early_stopping_patience", str(self.early_stopping_patience)]
        if self.base_model_id:
            argv += ["--base_model_id", self.base_model_id]
        if self.data_root is not None and not is_vision(run.task):
            from ..glue.tasks import get_task

            argv += ["--data_dir", str(Path(self.data_root) / get_task(run.task).folder)]
        for flag, table in (
            ("--max_train_samples", self.max_train_samples),
            ("--max_eval_samples", self.max_eval_samples),
        ):
            value = self._per_task(table, run.task)
            if value is not None:
                argv += [flag, str(value)]
        # sweep defaults, before the user's shared arguments so that those win
        argv += ["--keep_checkpoints", "false", "--report_to", "none", "--disable_tqdm", "true"]
        argv += ["--logging_strategy", "epoch"]
        return argv + list(self.recipe_args)


def single_process_form(argv: Sequence[str], module: str = RECIPE_MODULE) -> list[str]:
    return [sys.executable, "-m", module, *argv]


def accelerate_form(
    argv: Sequence[str], num_processes: str = "<NUM_GPUS>", module: str = RECIPE_MODULE
) -> str:
    """The same run on several GPUs: ``accelerate launch --num_processes N -m hf_squareloss.glue.run ...``."""
    return shlex.join(["accelerate", "launch", "--num_processes", num_processes, "-m", module, *argv])
