"""Where a sweep's runs run: one after another in this process (``sequential``, the default), or as Ray tasks
(``ray``: a local Ray on this machine's cores, or a cluster with ``--ray_address``).

The runner (:mod:`.runner`) plans the grid, keeps finished runs, checks stored commands, decides retries and keeps
``sweep_status.json``; a backend only starts attempts (:class:`~.attempt.RunJob`) and hands back their records
(:func:`~.attempt.run_attempt`). This module never imports Ray: the runner imports :mod:`.ray_backend` only for
``--backend ray``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .attempt import RunJob, local_worker, run_attempt
from .interrupt import StopRequest

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendOptions",
    "SequentialBackend",
    "check_cluster_paths",
]

BACKENDS = ("sequential", "ray")


@dataclass(frozen=True)
class BackendOptions:
    """``compare``'s choice of backend and its resources."""

    name: str = "sequential"
    ray_address: str | None = None
    """Join this Ray cluster (``HEAD:6379``, ``auto``, ``ray://HEAD:10001``); ``None``: start a local Ray."""
    num_cpus: int | None = None
    """CPUs of the local Ray (default: this machine's)."""
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    max_retries: int = 2
    """Attempts of a run after the first, when it crashed (killed by a signal) or its worker or node was lost."""

    def __post_init__(self) -> None:
        if self.name not in BACKENDS:
            raise ValueError(f"--backend must be one of {list(BACKENDS)}, got {self.name!r}")
        if self.max_retries < 0:
            raise ValueError(f"--max_retries must be >= 0, got {self.max_retries}")
        if self.name == "ray":
            if self.cpus_per_run <= 0:
                raise ValueError(f"--cpus_per_run must be > 0, got {self.cpus_per_run:g}")
            if self.gpus_per_run < 0:
                raise ValueError(f"--gpus_per_run must be >= 0, got {self.gpus_per_run:g}")
            if self.num_cpus is not None and self.num_cpus < 1:
                raise ValueError(f"--num_cpus must be >= 1, got {self.num_cpus}")
            if self.num_cpus is not None and self.ray_address:
                raise ValueError(
                    "--num_cpus sizes the local Ray; a cluster joined with --ray_address has its own"
                )
            return
        given = [
            flag
            for flag, value, default in (
                ("--ray_address", self.ray_address, None),
                ("--num_cpus", self.num_cpus, None),
                ("--cpus_per_run", self.cpus_per_run, 1.0),
                ("--gpus_per_run", self.gpus_per_run, 0.0),
            )
            if value != default
        ]
        if given:
            raise ValueError(f"{', '.join(given)}: for --backend ray only")

    @property
    def threads_per_run(self) -> int:
        """``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` of a Ray run: its CPUs (at least 1)."""
        return max(1, int(self.cpus_per_run))


def _relative_paths(values: Sequence[str]) -> list[str]:
    """The values that name an existing file or folder by a relative path (from the driver's folder)."""
    out = []
    for value in values:
        candidate = value.split("=", 1)[1] if value.startswith("--") and "=" in value else value
        if not candidate or candidate.startswith("-") or os.path.isabs(os.path.expanduser(candidate)):
            continue
        if os.path.exists(candidate):
            out.append(candidate)
    return out


def check_cluster_paths(
    output_dir: str,
    data_root: str | None,
    model_name_or_path: str,
    recipe_args: Sequence[str],
) -> None:
    """On a cluster every path a run reads or writes must mean the same on every node: refuse relative ones.

    ``--output_dir`` and ``--data_root`` must be absolute; ``--model_name_or_path`` and the recipe arguments must
    not name a local file or folder by a relative path (a Hub id such as ``bert-base-uncased`` is fine).
    """
    problems = []
    if not os.path.isabs(os.path.expanduser(output_dir)):
        problems.append(f"--output_dir {output_dir!r}")
    if data_root and not os.path.isabs(os.path.expanduser(data_root)):
        problems.append(f"--data_root {data_root!r}")
    problems += [f"--model_name_or_path {p!r}" for p in _relative_paths([model_name_or_path])]
    problems += [f"recipe argument {p!r}" for p in _relative_paths(recipe_args)]
    if problems:
        raise ValueError(
            "with --ray_address, every run folder and data path must be an absolute path on a filesystem that "
            f"every node of the cluster mounts at the same place (NFS, say); relative: {', '.join(problems)}"
        )


Result = tuple[RunJob, dict[str, Any]]


class Backend(ABC):
    """Starts attempts of runs and hands back their records."""

    name: str
    submitted: str = "starting"
    """What the console says of a run handed to the backend (Ray: it may wait in Ray's queue)."""

    def start(self) -> None:  # noqa: B027 - nothing to do for most backends
        """Get ready (Ray: start or join Ray, check the sweep folder is shared)."""

    def close(self) -> None:  # noqa: B027
        """Release what :meth:`start` took (Ray: disconnect; stop the local Ray it started)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What ``sweep_status.json`` records of the backend for this session."""

    @abstractmethod
    def submit(self, job: RunJob) -> None:
        """Start (or queue) one attempt."""

    @abstractmethod
    def has_room(self) -> bool:
        """Whether another run may be submitted now (the sequential backend: when none is)."""

    @abstractmethod
    def running(self) -> list[RunJob]:
        """The jobs submitted whose records have not come back."""

    @abstractmethod
    def results(self) -> list[Result]:
        """Wait a little (or for the running attempt) and return the records of the attempts that ended."""

    def stop(self) -> list[Result]:
        """Stop the running attempts politely; return the records that came back."""
        return []


class SequentialBackend(Backend):
    """One run at a time, in this process; its progress lines echoed as they come."""

    name = "sequential"

    def __init__(
        self, echo: Callable[[str], None], stop: StopRequest, env: dict[str, str], verbose: bool = False
    ) -> None:
        self.echo, self.stop_request, self.env, self.verbose = echo, stop, env, verbose
        self.queue: list[RunJob] = []

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "address": None}

    def submit(self, job: RunJob) -> None:
        job.base_env = self.env
        self.queue.append(job)

    def has_room(self) -> bool:
        return not self.queue

    def running(self) -> list[RunJob]:
        return list(self.queue)

    def results(self) -> list[Result]:
        if not self.queue:
            return []
        job = self.queue.pop(0)
        record = run_attempt(
            job,
            local_worker(),
            should_stop=self.stop_request.requested,
            echo=lambda line: self.echo(f"  {line}"),
            verbose=self.verbose,
        )
        return [(job, record)]
