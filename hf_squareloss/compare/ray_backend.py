"""``hf-squareloss compare --backend ray``: every attempt of a run is a Ray task that runs the recipe's command in a
child process on the node it lands on (see :mod:`.attempt`), with the run's CPUs and GPUs reserved
(``--cpus_per_run``, ``--gpus_per_run``) and ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` set to its CPUs.

* Without ``--ray_address`` a local Ray is started on this machine's cores (``--num_cpus``), without dashboard,
  and stopped at the end; with it, the sweep joins that cluster and only disconnects at the end.
* Storage: the sweep folder must be one path that every node reads and writes (a shared filesystem). At start the
  driver writes a probe file into it, and a task pinned to each alive node must read it back, or the sweep is
  refused, naming the nodes that cannot.
* Retries are the driver's (tasks have Ray's ``max_retries=0``), so that every attempt is recorded: a task whose
  worker or node died comes back as ``lost`` (``WorkerCrashedError``, ``NodeDiedError``, ``OutOfMemoryError``...),
  and the runner submits it again, up to ``--max_retries`` times; the recipe resumes from the last checkpoint.
* Stopping (Ctrl-C, SIGTERM): the driver writes the stop file ``.sweep_stop`` into the sweep folder; each task
  polls it and stops its run politely (SIGINT, then SIGTERM, then SIGKILL); tasks still running after
  :data:`STOP_GRACE_SECONDS` are cancelled by force. The file is removed at the next start.
* The console shows each run's progress lines, read from the run's ``run.log`` as it grows (Ray's own output and
  logs stay in its session folder, ``/tmp/ray/session_*``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray import exceptions as ray_errors
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..runs.console import PROGRESS_PREFIX
from .attempt import LOG_FILE, RunJob, now, read_attempts, record_attempt, run_attempt
from .backends import Backend, BackendOptions, Result
from .interrupt import StopRequest

__all__ = ["STOP_FILE", "STOP_GRACE_SECONDS", "RayBackend", "unshared_nodes"]

STOP_FILE = ".sweep_stop"
STOP_GRACE_SECONDS = 45.0
"""How long stopped tasks get to stop their runs (SIGINT, 10 s, SIGTERM, 20 s, SIGKILL) before a forced cancel."""
PROBE_SECONDS = 120.0
_WAIT_SECONDS = 1.0
LOST_ERRORS: tuple[type[BaseException], ...] = (
    ray_errors.WorkerCrashedError,
    ray_errors.NodeDiedError,
    ray_errors.ObjectLostError,  # OwnerDiedError too
    ray_errors.OutOfMemoryError,
    ray_errors.LocalRayletDiedError,
)
"""What a task's result raises when the worker or node running it died: the run is tried again."""


def _attempt_task(job: RunJob, stop_file: str) -> dict[str, Any]:
    """A Ray task: one attempt of ``job`` on this worker."""
    context = ray.get_runtime_context()
    worker = {
        "hostname": socket.gethostname(),
        "node_id": context.get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
        "pid": os.getpid(),
    }
    return run_attempt(job, worker, should_stop=lambda: os.path.exists(stop_file))


def _read_probe(path: str) -> dict[str, Any]:
    """A Ray task pinned to one node: what that node reads at ``path``."""
    try:
        content: str | None = Path(path).read_text(encoding="utf-8")
        error = None
    except OSError as err:
        content, error = None, f"{type(err).__name__}: {err}"
    return {"content": content, "error": error, "hostname": socket.gethostname()}


def unshared_nodes(token: str, answers: dict[str, dict[str, Any]]) -> list[str]:
    """The nodes (``"hostname (node id)"``) whose answer to the probe is not ``token``, with what they saw."""
    out = []
    for node_id, answer in answers.items():
        if answer.get("content") != token:
            seen = answer.get("error") or "another content"
            out.append(f"{answer.get('hostname', '?')} (node {node_id[:12]}): {seen}")
    return out


class _LogFollower:
    """The new complete lines of a run's ``run.log``, its progress lines echoed with the run's ``[i/N]``."""

    def __init__(self, path: Path, prefix: str, echo: Callable[[str], None], verbose: bool) -> None:
        self.path, self.prefix, self.echo, self.verbose = path, prefix, echo, verbose
        self.offset = path.stat().st_size if path.is_file() else 0
        self.rest = b""

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return
        self.offset += len(data)
        *lines, self.rest = (self.rest + data).split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", errors="replace")
            if self.verbose or line.startswith(PROGRESS_PREFIX):
                self.echo(f"{self.prefix}{line}")


class RayBackend(Backend):
    """Runs as Ray tasks, on a local Ray or a cluster; see the module docstring."""

    name = "ray"
    submitted = "queued on Ray"

    def __init__(
        self,
        options: BackendOptions,
        root: Path,
        *,
        echo: Callable[[str], None],
        stop: StopRequest,
        verbose: bool = False,
    ) -> None:
        self.options, self.root, self.echo, self.stop_request, self.verbose = (
            options,
            root,
            echo,
            stop,
            verbose,
        )
        self.address = options.ray_address or "local"
        self.stop_file = root / STOP_FILE
        self.inflight: dict[Any, tuple[RunJob, _LogFollower]] = {}
        self.remote = ray.remote(_attempt_task)
        self.nodes: list[dict[str, Any]] = []

    # ---- start and end ---------------------------------------------------------------------------------------
    def start(self) -> None:
        settings: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
        }
        if self.options.ray_address:
            ray.init(address=self.options.ray_address, **settings)
        else:
            ray.init(address="local", num_cpus=self.options.num_cpus or os.cpu_count() or 1, **settings)
        try:
            self.nodes = [n for n in ray.nodes() if n.get("Alive")]
            self._check_resources()
            self._check_shared_storage()
            with contextlib.suppress(FileNotFoundError):
                self.stop_file.unlink()
        except BaseException:
            self.close()
            raise
        cpus = sum(n["Resources"].get("CPU", 0) for n in self.nodes)
        self.echo(
            f"Ray {ray.__version__} at {self.address}: {len(self.nodes)} node(s), {cpus:g} CPUs; "
            f"{self.options.cpus_per_run:g} CPU(s) and {self.options.gpus_per_run:g} GPU(s) per run"
        )

    def close(self) -> None:
        if ray.is_initialized():
            ray.shutdown()  # a local Ray stops; a cluster stays, this driver leaves it

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "address": self.address,
            "ray_version": ray.__version__,
            "nodes": [
                {
                    "node_id": n["NodeID"],
                    "hostname": n.get("NodeManagerHostname"),
                    "address": n.get("NodeManagerAddress"),
                    "cpus": n["Resources"].get("CPU", 0),
                    "gpus": n["Resources"].get("GPU", 0),
                }
                for n in self.nodes
            ],
            "cpus_per_run": self.options.cpus_per_run,
            "gpus_per_run": self.options.gpus_per_run,
            "threads_per_run": self.options.threads_per_run,
            "max_retries": self.options.max_retries,
        }

    def _check_resources(self) -> None:
        """A run must fit on one node, or its task would wait for ever."""
        need = {"CPU": self.options.cpus_per_run, "GPU": self.options.gpus_per_run}
        if not any(all(n["Resources"].get(k, 0) >= v for k, v in need.items() if v) for n in self.nodes):
            have = ", ".join(
                f"{n.get('NodeManagerHostname')}: {n['Resources'].get('CPU', 0):g} CPU, "
                f"{n['Resources'].get('GPU', 0):g} GPU"
                for n in self.nodes
            )
            raise ValueError(
                f"no Ray node has {need['CPU']:g} CPU(s) and {need['GPU']:g} GPU(s) for a run ({have}); lower "
                "--cpus_per_run / --gpus_per_run"
            )

    def _check_shared_storage(self) -> None:
        """Every alive node must read the probe this driver writes into the sweep folder."""
        token = uuid.uuid4().hex
        probe = self.root / f".sweep_probe_{token}"
        probe.write_text(token, encoding="utf-8")
        try:
            read = ray.remote(_read_probe)
            refs = {
                n["NodeID"]: read.options(
                    num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
                ).remote(str(probe))
                for n in self.nodes
            }
            answers = dict(zip(refs, ray.get(list(refs.values()), timeout=PROBE_SECONDS), strict=True))
        finally:
            probe.unlink(missing_ok=True)
        bad = unshared_nodes(token, answers)
        if bad:
            raise ValueError(
                f"the sweep folder {self.root} is not shared with every Ray node: {'; '.join(bad)}. Put "
                "--output_dir on a filesystem every node mounts at the same path (NFS, say)."
            )

    # ---- attempts --------------------------------------------------------------------------------------------
    def submit(self, job: RunJob) -> None:
        threads = str(self.options.threads_per_run)
        job.env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
        job.resources = {"cpus": self.options.cpus_per_run, "gpus": self.options.gpus_per_run}
        ref = self.remote.options(
            num_cpus=self.options.cpus_per_run,
            num_gpus=self.options.gpus_per_run,
            max_retries=0,
            retry_exceptions=False,
            name=f"hf-squareloss {job.label}",
        ).remote(job, str(self.stop_file))
        prefix = f"  {job.tag.split(' ', 1)[0]} "
        self.inflight[ref] = (
            job,
            _LogFollower(Path(job.run_dir) / LOG_FILE, prefix, self.echo, self.verbose),
        )

    def has_room(self) -> bool:
        return True  # Ray queues the tasks until a worker has the resources

    def running(self) -> list[RunJob]:
        return [job for job, _ in self.inflight.values()]

    def results(self) -> list[Result]:
        if not self.inflight:
            return []
        refs = list(self.inflight)
        ready, rest = ray.wait(refs, num_returns=1, timeout=_WAIT_SECONDS)
        if ready and rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        for _, follower in self.inflight.values():
            follower.poll()
        return [self._collect(ref) for ref in ready]

    def _collect(self, ref: Any) -> Result:
        job, follower = self.inflight.pop(ref)
        try:
            record = ray.get(ref)
        except LOST_ERRORS as err:
            record = self._ended_without_record(job, "lost", err)
        except ray_errors.TaskCancelledError as err:
            record = self._ended_without_record(job, "stopped", err)
        except ray_errors.RayTaskError as err:  # the task itself raised: not the run's failure, but no retry
            record = self._ended_without_record(job, "failed", err)
        follower.poll()
        return job, record

    def _ended_without_record(self, job: RunJob, outcome: str, err: BaseException) -> dict[str, Any]:
        """The record of an attempt whose task did not return one: what its worker wrote when it started, and how
        it ended from here; a line in the run's log says so."""
        error = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        started = next(
            (
                a
                for a in read_attempts(job.run_dir)
                if (a.get("session"), a.get("attempt")) == (job.session, job.attempt)
            ),
            {},
        )
        entry = {
            "session": job.session,
            "attempt": job.attempt,
            "of": job.max_attempts,
            "backend": self.name,
            "resources": job.resources,
            "log": str(Path(job.run_dir) / LOG_FILE),
            **started,
            "outcome": outcome,
            "ended_at": now(),
            "error": error,
        }
        record_attempt(job.run_dir, entry)
        with open(Path(job.run_dir) / LOG_FILE, "a", encoding="utf-8") as log:
            log.write(f"\n===== {now()} attempt {job.attempt} {outcome}: {error}\n")
        return entry

    def stop(self) -> list[Result]:
        """Ask every task to stop its run, wait for them (at most :data:`STOP_GRACE_SECONDS`), then cancel the rest
        by force."""
        self.stop_file.write_text(now(), encoding="utf-8")
        out: list[Result] = []
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while self.inflight and time.monotonic() < deadline:
            out += self.results()
        for ref in list(self.inflight):
            ray.cancel(ref, force=True)
        while self.inflight:
            out += self.results()
        return out
