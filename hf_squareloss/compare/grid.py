"""The comparison grid: tasks x protocols x loss types x label-noise rates x seeds, and each run's command.

Folder layout of a sweep (``root`` is ``hf-squareloss compare --output_dir``)::

    root/
      sweep.json               the grid and the shared recipe arguments (written at the first start)
      sweep_status.json        progress: finished / failed runs, per-run wall time, sessions
      commands.sh              every run's command, single-process and ``accelerate launch`` forms
      results.csv, results.json, summary.csv, RESULTS.md, *.png   the aggregated results
      runs/<task>/<protocol>/<loss>/noise<eta>/seed<s>.json        copies of the per-run summaries
      <task>/<protocol>/<loss>/noise<eta>/seed<s>/                 one recipe output folder per run
          (run_args.json, run_summary.json, all_results.json, model..., see hf_squareloss.runs.folder)
          sweep_run.json       the command the sweep gave this run
          run.log              the run's full output

``<eta>`` is the noise rate as ``0``, ``0.2``, ``0.4``...; ``<protocol>`` is ``early_stopping``, ``same_epochs``
or one of the task family's own (image tasks: ``tce_paper``). A ``same_epochs`` run of loss L takes as reference the
``early_stopping`` run of ``ce`` in the same task, noise rate and seed. ``<task>`` is the task's name with ``:`` as
``-`` (``vision:digits`` lives in ``vision-digits``). Each task's family (:mod:`hf_squareloss.runs.families`) says
which recipe runs it and with which model and data flags.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..registry import get_loss_spec
from ..runs.families import families, family_of

__all__ = [
    "CONTROLLED_FLAGS",
    "RunSpec",
    "SweepSpec",
    "accelerate_form",
    "controlled_flags",
    "parse_per_task",
]

REFERENCE_LOSS = "ce"


def reference_protocol(protocol: str) -> str:
    """The protocol of the ``ce`` runs that cells of ``protocol`` are compared with."""
    return "early_stopping" if protocol == "same_epochs" else protocol


# flags the sweep sets for every run; passing them as shared recipe arguments would be ambiguous
CONTROLLED_FLAGS = (
    "--model_name_or_path",
    "--task_name",
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
)
"""The flags the sweep sets for a run of any task family; each family adds its own (``TaskFamily.sweep_flags``)."""


def controlled_flags() -> tuple[str, ...]:
    """Every flag the sweep sets for some run: :data:`CONTROLLED_FLAGS` and those of every task family."""
    return tuple(
        dict.fromkeys([*CONTROLLED_FLAGS, *(f for family in families() for f in family.sweep_flags)])
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
        return family_of(self.task).recipe_module

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
        task = family_of(key).canonical_task(key) if sep else "*"
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
    """Folder holding the tasks' data (GLUE's task folders ``MRPC/``, ``SST-2/``... in their original layout, image
    tasks' ``<name>/train``...); None: the Hub."""
    max_train_samples: Mapping[str, int] = field(default_factory=dict)
    max_eval_samples: Mapping[str, int] = field(default_factory=dict)
    recipe_args: Sequence[str] = ()
    """Arguments given to every run (learning rate, epochs, batch size, ``--tce_alpha``...)."""
    early_stopping_patience: int | None = None
    """Patience of the ``early_stopping`` runs (the recipe's default when None); ``same_epochs`` runs take none."""
    base_model_id: str | None = None
    """Hub id of the model fine-tuned, for the model cards (when ``model_name_or_path`` is a local folder)."""

    def __post_init__(self) -> None:
        self.tasks = [family_of(t).canonical_task(t) for t in self.tasks]
        for task in self.tasks:
            family_of(task).sweep_task(task)  # ValueError for a task a sweep cannot run (a regression task)
        self._check_protocols_fit_tasks()
        for loss in self.losses:
            get_loss_spec(loss)
        offered = {p for t in self.tasks for p in family_of(t).sweep_protocols}
        if any(p not in offered for p in self.protocols):  # only then ask every family
            known = sweep_protocols()
            unknown = [p for p in self.protocols if p not in known]
            if unknown:
                raise ValueError(f"unknown protocol(s) {unknown}; the sweep knows {list(known)}")
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
        controlled = controlled_flags() if self.recipe_args else ()
        for arg in self.recipe_args:
            flag = arg.split("=", 1)[0]
            if flag in controlled:
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

    def _check_protocols_fit_tasks(self) -> None:
        """Each protocol must be one that every task's family runs (``tce_paper``: image tasks only)."""
        for protocol in self.protocols:
            unfit = [t for t in self.tasks if protocol not in family_of(t).sweep_protocols]
            offering = [f.description for f in families() if protocol in f.sweep_protocols] if unfit else []
            if offering:
                raise ValueError(f"the {protocol} protocol is for {' or '.join(offering)}, not {unfit}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def runs(self) -> list[RunSpec]:
        """Every run, in order: task by task; within a task the early_stopping runs (hence the ``ce``
        references) before the same_epochs runs; noise rate, then seed, then loss innermost, so that an
        interrupted sweep has complete comparisons for the cells it finished."""
        out = []
        for task in self.tasks:
            for protocol in (p for p in family_of(task).sweep_protocols if p in self.protocols):
                for rate in self.noise_rates:
                    for seed in self.seeds:
                        for loss in self.losses:
                            if protocol == "same_epochs" and loss == REFERENCE_LOSS:
                                continue  # the reference itself
                            out.append(RunSpec(task, protocol, loss, rate, seed))
        return out

    def _per_task(self, table: Mapping[str, int], task: str) -> int | None:
        return table.get(task, table.get("*"))

    def recipe_argv(self, run: RunSpec, root: Path) -> list[str]:
        """The recipe's arguments for ``run`` inside the sweep folder ``root``."""
        family_argv = family_of(run.task).sweep_argv(run.task, self.model_name_or_path, self.data_root)
        argv = [
            *family_argv.head,
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
        argv += family_argv.data
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


def sweep_protocols() -> tuple[str, ...]:
    """Every protocol a sweep can run, over the task families (this imports them all)."""
    return tuple(dict.fromkeys(p for family in families() for p in family.sweep_protocols))


def single_process_form(argv: Sequence[str], module: str) -> list[str]:
    """The run as one process: ``python -m <recipe module> ...``."""
    return [sys.executable, "-m", module, *argv]


def accelerate_form(argv: Sequence[str], module: str, num_processes: str = "<NUM_GPUS>") -> str:
    """The same run on several GPUs: ``accelerate launch --num_processes N -m <recipe module> ...``."""
    return shlex.join(["accelerate", "launch", "--num_processes", num_processes, "-m", module, *argv])
