"""Running a comparison grid resumably, one run after another or on Ray.

* a finished run (its ``run_summary.json``) is never recomputed nor overwritten;
* a half-finished run is started again with the same command: the recipe resumes it from its last checkpoint;
* a run whose stored command differs from the planned one is an error (the grid's settings changed), so that a
  sweep folder never mixes settings;
* each run is a child process (``python -m <the recipe of its task's family>``, e.g. ``hf_squareloss.glue.run``,
  or the ``--launcher`` given, e.g. ``accelerate launch --num_processes 8``); its output goes to ``<run>/run.log``
  and its progress lines to the console; each attempt is recorded in ``<run>/sweep_attempts.json`` (where, when,
  how it ended: :mod:`.attempt`);
* where the children run is the backend's business (:mod:`.backends`): here, one after another (``sequential``), or
  as Ray tasks (``ray``, :mod:`.ray_backend`); the planning, the checks, the retries and ``sweep_status.json`` are
  this module's, the same for both;
* a run killed by a signal (or whose Ray worker or node died) is tried again, up to ``max_retries`` times, and
  resumes from its last checkpoint; a run that fails by itself (non-zero exit) is reported with its log, and the
  sweep goes on; a ``same_epochs`` run waits for its reference;
* Ctrl-C or SIGTERM stops the runs politely and leaves the sweep resumable (:mod:`.interrupt`).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..runs.folder import is_finished, read_json, run_lock, write_json
from .attempt import LOG_FILE, RETRYABLE, RunJob, attempt_summary, now
from .backends import Backend, BackendOptions, SequentialBackend
from .grid import RunSpec, SweepSpec, accelerate_form, single_process_form
from .interrupt import StopRequest, SweepInterrupted

__all__ = ["BackendOptions", "SweepInterrupted", "SweepOutcome", "run_sweep", "write_commands"]

SWEEP_FILE = "sweep.json"
STATUS_FILE = "sweep_status.json"
RUN_COMMAND_FILE = "sweep_run.json"
SWEEP_LOCK = ".sweep.lock"
_RECORDED_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "HF_SQUARELOSS_DATA",
    "HF_SQUARELOSS_MODELS",
)
# arguments that name places, not settings: they may differ when a sweep folder has moved
# flags whose value says where, or names things, without changing what a run computes
_PATH_FLAGS = ("--output_dir", "--reference_run", "--base_model_id")


@dataclass
class SweepOutcome:
    finished: list[str] = field(default_factory=list)
    """Runs finished in this session."""
    kept: list[str] = field(default_factory=list)
    """Runs already finished before (not recomputed)."""
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    """Runs that took more than one attempt in this session (finished or not)."""
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped


def _now() -> str:
    return now()


def _settings(argv: Sequence[str]) -> list[str]:
    """``argv`` without the values of the path-only flags."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in _PATH_FLAGS:
            skip = True
            continue
        out.append(arg)
    return out


def _check_stored_command(run_dir: Path, argv: Sequence[str], label: str) -> None:
    stored_path = run_dir / RUN_COMMAND_FILE
    if not stored_path.is_file():
        return
    stored = read_json(stored_path).get("argv", [])
    if _settings(stored) != _settings(argv):
        raise ValueError(
            f"{run_dir} ({label}) was started with other settings:\n  stored:  {shlex.join(stored)}\n  planned: "
            f"{shlex.join(argv)}\nA sweep folder holds one set of settings: use another --output_dir, or "
            "repeat the original options."
        )


SHARED_SETTINGS = (
    "model_name_or_path",
    "early_stopping_patience",
    "noise_type",
    "data_root",
    "max_train_samples",
    "max_eval_samples",
    "recipe_args",
)
"""The settings every run of a sweep folder shares (the grid itself, tasks x losses x noise x seeds, may grow)."""


def shared_settings_differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """``"key: old -> new; ..."`` for the shared settings that differ, ``""`` when none does."""
    changed = [k for k in SHARED_SETTINGS if stored.get(k) != current.get(k)]
    return "; ".join(f"{k}: {stored.get(k)!r} -> {current.get(k)!r}" for k in changed)


def _check_sweep_file(root: Path, spec: SweepSpec) -> None:
    """The shared settings of a sweep folder are fixed at its first start; the grid may grow."""
    path = root / SWEEP_FILE
    current = spec.to_dict()
    if path.is_file():
        stored = read_json(path).get("spec", {})
        details = shared_settings_differences(stored, current)
        if details:
            raise ValueError(
                f"{root} is a sweep with other shared settings ({details}). Use another --output_dir, or repeat "
                "the original options (the grid itself may grow: more tasks, losses, seeds, noise rates)."
            )
    write_json(path, {"spec": current, "updated_at": _now()})


def write_commands(root: Path, spec: SweepSpec) -> Path:
    """``root/commands.sh``: each run's command, with its ``accelerate launch`` form for several GPUs."""
    lines = [
        "#!/usr/bin/env bash",
        "# The runs of this sweep, one after another. For several GPUs, use the commented `accelerate launch` form.",
        "set -e",
    ]
    for run in spec.runs():
        argv = spec.recipe_argv(run, root)
        lines += [
            "",
            f"# {run.label}",
            shlex.join(single_process_form(argv, run.module)),
            f"# {accelerate_form(argv, module=run.module)}",
        ]
    path = root / "commands.sh"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class _Status:
    """``sweep_status.json``: what is finished, failed or running, where and when each run ran, and each session's
    command, backend and wall time."""

    def __init__(
        self,
        root: Path,
        command: str,
        total: int,
        backend: Mapping[str, Any],
        started: tuple[str, float] | None = None,
    ) -> None:
        """``started``: when the session began (UTC ISO and ``time.perf_counter()``), before the backend started."""
        self.path = root / STATUS_FILE
        data = read_json(self.path) if self.path.is_file() else {}
        self.data: dict[str, Any] = {
            "command": command,
            "environment": {k: os.environ[k] for k in _RECORDED_ENV if k in os.environ},
            "backend": backend["backend"],
            "address": backend.get("address"),
            "planned": total,
            "runs": data.get("runs", {}),
            "sessions": data.get("sessions", []),
        }
        started_at, self.started = started or (_now(), time.perf_counter())
        self.data["sessions"].append(
            {
                "started_at": started_at,
                "ended_at": None,
                "seconds": 0.0,
                "command": command,
                "backend": dict(backend),
            }
        )
        self.running: list[str] = []
        self.save()

    @property
    def session(self) -> int:
        """The number of this session (1 for a sweep's first)."""
        return len(self.data["sessions"])

    def set_run(self, label: str, *, replace: bool = False, **info: Any) -> None:
        """Update the entry of run ``label`` with ``info`` (``replace``: ``info`` becomes its entry)."""
        if replace:
            self.data["runs"][label] = info
        else:
            self.data["runs"].setdefault(label, {}).update(info)
        self.save()

    def save(self, running: Sequence[str] | None = None) -> None:
        """Write the file; ``running``: the runs running now (default: as last saved)."""
        if running is not None:
            self.running = list(running)
        session = self.data["sessions"][-1]
        session["ended_at"] = _now()
        session["seconds"] = round(time.perf_counter() - self.started, 1)
        self.data["running"] = self.running
        self.data["wall_seconds_all_sessions"] = round(sum(s["seconds"] for s in self.data["sessions"]), 1)
        states = [r.get("state") for r in self.data["runs"].values()]
        self.data["counts"] = {s: states.count(s) for s in ("finished", "failed", "skipped")}
        write_json(self.path, self.data)


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _why(record: Mapping[str, Any]) -> str:
    """How an attempt ended, in a few words: its signal, its error or its exit code."""
    if record.get("error"):
        return str(record["error"])
    if record.get("signal"):
        return f"killed by {record['signal']}"
    if record.get("exit_code") == 0:
        return "exit code 0 but no run_summary.json"
    return f"exit code {record.get('exit_code')}"


@dataclass
class _Session:
    """One start of a sweep: its runs submitted to the backend in the grid's order (a ``same_epochs`` run once its
    reference is finished), their attempts' records turned into the outcome and ``sweep_status.json``, crashed
    attempts tried again."""

    root: Path
    planned: list[tuple[RunSpec, list[str]]]
    engine: Backend
    status: _Status
    outcome: SweepOutcome
    stop: StopRequest
    echo: Callable[[str], None]
    launcher: str | None
    max_attempts: int
    started: float = field(default_factory=time.perf_counter)
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        total = len(self.planned)
        self.by_label = {run.label: (run, argv) for run, argv in self.planned}
        self.tags = {
            run.label: f"[{i}/{total}] {run.label}" for i, (run, _) in enumerate(self.planned, start=1)
        }

    def run(self) -> None:
        queue = list(self.planned)
        shown: list[str] | None = None
        while True:
            self.stop.check()
            queue = self._submit_ready(queue)
            running = [job.label for job in self.engine.running()]
            if running != shown:
                self.status.save(running=running)
                shown = running
            if not running:
                return
            for job, record in self.engine.results():
                self.done(job, record)

    def _submit_ready(self, queue: list[tuple[RunSpec, list[str]]]) -> list[tuple[RunSpec, list[str]]]:
        """Submit the runs that can start now, in order; return those that must wait."""
        waiting = {job.label for job in self.engine.running()}
        remaining = []
        for run, argv in queue:
            if is_finished(self.root / run.relpath):
                self.outcome.kept.append(run.label)
                self.status.set_run(run.label, state="finished", dir=str(run.relpath))
                continue
            reference = run.reference()
            if reference is not None and not is_finished(self.root / reference.relpath):
                if reference.label not in waiting:
                    self.echo(
                        f"{self.tags[run.label]}: skipped, its reference ({reference.label}) is not finished"
                    )
                    self.outcome.skipped.append(run.label)
                    self.status.set_run(run.label, state="skipped", dir=str(run.relpath))
                    continue
            elif self.engine.has_room():
                self._start(run, argv, attempt=1)
                waiting.add(run.label)
                continue
            remaining.append((run, argv))
            waiting.add(run.label)
        return remaining

    def _start(self, run: RunSpec, argv: list[str], attempt: int) -> None:
        run_dir = self.root / run.relpath
        run_dir.mkdir(parents=True, exist_ok=True)
        if attempt == 1:
            resumed = (run_dir / RUN_COMMAND_FILE).is_file()
            write_json(run_dir / RUN_COMMAND_FILE, {"argv": argv, "written_at": _now()})
            word = f"{self.engine.submitted} again" if resumed else self.engine.submitted
        else:
            word = f"trying again from its last checkpoint (attempt {attempt} of {self.max_attempts})"
        self.echo(f"{self.tags[run.label]}: {word} (log: {run_dir / LOG_FILE})")
        job = RunJob(
            label=run.label,
            tag=self.tags[run.label],
            run_dir=str(run_dir),
            argv=argv,
            module=run.module,
            launcher=self.launcher,
            attempt=attempt,
            max_attempts=self.max_attempts,
            backend=self.engine.name,
            session=self.status.session,
        )
        self.engine.submit(job)

    def done(self, job: RunJob, record: dict[str, Any]) -> None:
        """Take the record of an attempt that ended: finished, failed, stopped, or tried again."""
        if record.get("outcome") == "stopped" and not record.get("started_at"):
            return  # stopped before it started: the run stays as it was
        records = self.records.setdefault(job.label, [])
        records.append(record)
        run, argv = self.by_label[job.label]
        tag, kind = self.tags[job.label], record.get("outcome")
        if self.stop.requested() and kind != "finished":
            kind = "stopped"  # whatever the stop did to it (a forced cancel: a lost worker)
        if kind in RETRYABLE and job.attempt < job.max_attempts and not self.stop.requested():
            self.echo(f"{tag}: attempt {job.attempt} {kind} ({_why(record)})")
            self._start(run, argv, attempt=job.attempt + 1)
            return
        if len(records) > 1 and job.label not in self.outcome.retried:
            self.outcome.retried.append(job.label)
        details = {
            "dir": str(run.relpath),
            "seconds": round(sum(float(r.get("seconds") or 0.0) for r in records), 1),
            "attempts": len(records),
            **attempt_summary(record),
            "started_at": records[0].get("started_at"),
            "log": str(self.root / run.relpath / LOG_FILE),
        }
        if kind == "stopped":
            self.status.set_run(job.label, replace=True, state="stopped", **details)
        elif kind == "finished":
            self._finished(job, details)
        else:
            self.outcome.failed.append(job.label)
            self.status.set_run(job.label, replace=True, state="failed", error=_why(record), **details)
            log = Path(details["log"])
            self.echo(
                f"{tag}: FAILED ({_why(record)}, {len(records)} attempt(s)); last lines of {log}:\n{_tail(log)}"
            )

    def _finished(self, job: RunJob, details: dict[str, Any]) -> None:
        self.outcome.finished.append(job.label)
        self.status.set_run(job.label, replace=True, state="finished", **details)
        runs = [run for run, _ in self.planned]
        finished = sum(is_finished(self.root / r.relpath) for r in runs)
        left = (time.perf_counter() - self.started) / len(self.outcome.finished) * (len(runs) - finished)
        where = f" on {details['worker'].get('hostname')}" if self.engine.name != "sequential" else ""
        self.echo(
            f"{self.tags[job.label]}: finished in {details['seconds']:.0f}s{where} ({finished}/{len(runs)} done, "
            f"about {left / 60:.0f} min left)"
        )


def make_backend(
    options: BackendOptions,
    root: Path,
    *,
    echo: Callable[[str], None],
    stop: StopRequest,
    env: dict[str, str],
    verbose: bool = False,
) -> Backend:
    """The backend ``options`` names (Ray is imported here, only for ``ray``)."""
    if options.name == "sequential":
        return SequentialBackend(echo, stop, env, verbose)
    if importlib.util.find_spec("ray") is None:
        raise ValueError('--backend ray needs Ray: pip install "hf-squareloss[ray]" (or "ray[default]")')
    from .ray_backend import RayBackend

    return RayBackend(options, root, echo=echo, stop=stop, verbose=verbose)


def _prepare(root: Path, spec: SweepSpec) -> list[tuple[RunSpec, list[str]]]:
    """Check the sweep folder against the grid (all checks before any work), write ``commands.sh``; return the
    planned runs and their commands."""
    _check_sweep_file(root, spec)
    planned = [(run, spec.recipe_argv(run, root)) for run in spec.runs()]
    for run, argv in planned:
        _check_stored_command(root / run.relpath, argv, run.label)
    write_commands(root, spec)
    return planned


def _announce(root: Path, planned: list[tuple[RunSpec, list[str]]], echo: Callable[[str], None]) -> None:
    todo = sum(not is_finished(root / run.relpath) for run, _ in planned)
    echo(
        f"sweep {root}: {len(planned)} runs, {len(planned) - todo} already finished, {todo} to do. "
        f"Per-run commands and their `accelerate launch` forms: {root / 'commands.sh'}"
    )
    if planned:
        echo(f"  e.g. on several GPUs: {accelerate_form(planned[0][1], module=planned[0][0].module)}")


def run_sweep(
    spec: SweepSpec,
    root: str | os.PathLike,
    *,
    launcher: str | None = None,
    verbose: bool = False,
    out: TextIO | None = None,
    command: str | None = None,
    env: dict[str, str] | None = None,
    backend: BackendOptions | None = None,
) -> SweepOutcome:
    """Run every planned run not yet finished under ``root`` on ``backend`` (default: one after another, in this
    process); see the module docstring. ``env``: the runs' environment with the sequential backend (default: this
    process's); Ray runs get their worker's."""
    options = backend or BackendOptions()
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    stream = out or sys.stdout

    def echo(text: str) -> None:
        print(text, file=stream, flush=True)

    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    outcome = SweepOutcome()
    stop = StopRequest()
    status: _Status | None = None
    started_at, started = _now(), time.perf_counter()
    try:
        with stop.installed(), run_lock(root, SWEEP_LOCK):
            planned = _prepare(root, spec)
            engine = make_backend(options, root, echo=echo, stop=stop, env=child_env, verbose=verbose)
            engine.start()
            stop.reclaim()  # ray.init sets its own SIGTERM handler
            try:
                status = _Status(root, command or "", len(planned), engine.describe(), (started_at, started))
                _announce(root, planned, echo)
                session = _Session(
                    root, planned, engine, status, outcome, stop, echo, launcher, options.max_retries + 1
                )
                try:
                    session.run()
                except KeyboardInterrupt:
                    for job, record in engine.stop():
                        session.done(job, record)
                    raise
                status.save()
            finally:
                engine.close()
    except KeyboardInterrupt:
        if status is not None:
            status.save()
        echo("sweep interrupted: finished runs are kept; rerun the same command to continue where it stopped")
        raise
    finally:
        outcome.wall_seconds = time.perf_counter() - started
    return outcome
