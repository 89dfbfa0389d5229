"""One attempt of a sweep's run: the recipe's command in a child process, its output appended to the run's
``run.log``, and its record in the run folder's ``sweep_attempts.json``.

Both backends run a run through :func:`run_attempt`: the sequential one in the sweep's own process, the Ray one
inside a Ray task, on whichever node the task lands. An attempt ends as

``finished``  exit code 0 and the run's ``run_summary.json`` written;
``failed``    the run failed by itself (a non-zero exit code: a bug, bad arguments, a lock held by a live run);
              trying again would fail again;
``crashed``   the run was killed by a signal it did not ask for (SIGKILL of the out-of-memory killer, a segfault):
              the sweep tries again, and the recipe resumes from the run's last complete checkpoint;
``lost``      (the driver's word, Ray) the worker or the node running the attempt died: tried again the same way;
``stopped``   the sweep was interrupted and stopped the run politely (SIGINT, as Ctrl-C would, then SIGTERM, then
              SIGKILL); the next start of the sweep resumes it.

The child dies with the process that started it (``PR_SET_PDEATHSIG`` on Linux), so that a run whose Ray worker
was killed never goes on as an orphan holding the run's lock; before a retry starts, the attempt waits (up to
:data:`LOCK_WAIT_SECONDS`) for the lock of the previous attempt to be freed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from ..runs.console import PROGRESS_PREFIX
from ..runs.folder import is_finished, last_complete_checkpoint, read_json, run_lock_holder, write_json

__all__ = [
    "ATTEMPTS_FILE",
    "LOG_FILE",
    "RETRYABLE",
    "RunJob",
    "attempt_summary",
    "execute",
    "local_worker",
    "now",
    "read_attempts",
    "record_attempt",
    "run_attempt",
    "stop_child",
]

LOG_FILE = "run.log"
ATTEMPTS_FILE = "sweep_attempts.json"
RETRYABLE = ("crashed", "lost")
"""The attempt outcomes after which the sweep tries the run again (up to ``--max_retries`` times)."""
LOCK_WAIT_SECONDS = 120.0
"""How long an attempt waits for the run's lock to be freed by the attempt before it (its process may still be
dying; on NFS the lock of a vanished machine is freed when the server's lease ends, 90 s by default)."""
_POLL_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1


def now() -> str:
    """The time as UTC ISO 8601, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunJob:
    """What a backend needs to run one attempt of one run: plain data (a Ray task receives it pickled)."""

    label: str
    tag: str
    """``[i/N] <label>``: how the console names the run."""
    run_dir: str
    argv: list[str]
    module: str
    launcher: str | None = None
    attempt: int = 1
    max_attempts: int = 1
    backend: str = "sequential"
    base_env: dict[str, str] | None = None
    """The child's environment; ``None``: the environment of the process running the attempt (a Ray worker's)."""
    env: dict[str, str] = field(default_factory=dict)
    """Set on top of it (``OMP_NUM_THREADS``... of the run's CPUs)."""
    resources: dict[str, float] = field(default_factory=dict)
    """What the backend reserved for the run (Ray: ``{"cpus": 1, "gpus": 0}``)."""
    session: int | None = None
    """The sweep session (1, 2... as in ``sweep_status.json``) the attempt belongs to."""

    def command(self) -> list[str]:
        """The child's command, with the Python of the process running the attempt."""
        if not self.launcher:
            return [sys.executable, "-m", self.module, *self.argv]
        return [*shlex.split(self.launcher), "-m", self.module, *self.argv]


def local_worker() -> dict[str, Any]:
    """Where an attempt runs, outside Ray: this machine and this process."""
    return {"hostname": socket.gethostname(), "pid": os.getpid()}


def read_attempts(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The attempts recorded in ``run_dir`` (``[]`` for a run started before they were)."""
    path = Path(run_dir) / ATTEMPTS_FILE
    if not path.is_file():
        return []
    return list(read_json(path).get("attempts", []))


def record_attempt(run_dir: str | os.PathLike, entry: Mapping[str, Any]) -> None:
    """Add ``entry`` to ``sweep_attempts.json``, or update the entry of the same session and attempt number."""
    attempts = read_attempts(run_dir)
    key = (entry.get("session"), entry.get("attempt"))
    for i, old in enumerate(attempts):
        if (old.get("session"), old.get("attempt")) == key:
            attempts[i] = {**old, **entry}
            break
    else:
        attempts.append(dict(entry))
    write_json(Path(run_dir) / ATTEMPTS_FILE, {"attempts": attempts})


def _libc_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        return None


def _child_setup(prctl: Callable[..., int] | None, parent: int) -> Callable[[], None]:
    """What the child does before it starts the run: SIGINT back to its default (a sweep started as a background
    job has it ignored) and no signal blocked (a Ray worker's thread blocks SIGINT, and a child inherits the mask),
    so that the polite stop reaches the run; and die with its parent."""

    def setup() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:  # the parent died before the line above
                os._exit(1)

    return setup


def stop_child(proc: subprocess.Popen) -> None:
    """Stop a child politely (SIGINT, as Ctrl-C would), then firmly."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, 10), (signal.SIGTERM, 20)):
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.kill()
    proc.wait()


def _pump(stream: IO[str], log: IO[str], echo: Callable[[str], None] | None, verbose: bool) -> None:
    """Copy the child's output to the log, echoing its progress lines (every line with ``verbose``)."""
    for line in stream:
        log.write(line)
        log.flush()
        if echo is not None and (verbose or line.startswith(PROGRESS_PREFIX)):
            echo(line.rstrip("\n"))


def execute(
    command: list[str],
    log_path: Path,
    env: dict[str, str],
    *,
    should_stop: Callable[[], bool] = lambda: False,
    echo: Callable[[str], None] | None = None,
    verbose: bool = False,
    on_start: Callable[[int], None] | None = None,
) -> tuple[int, bool]:
    """Run ``command``, appending its output to ``log_path``; stop it politely when ``should_stop()`` turns true.
    Returns the exit code (negative: the signal that killed it) and whether it was stopped."""
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n===== {now()} {shlex.join(command)}\n")
        log.flush()
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=env,
            errors="replace",
            preexec_fn=_child_setup(_libc_prctl(), os.getpid()) if os.name == "posix" else None,
        )
        assert proc.stdout is not None
        pump = threading.Thread(target=_pump, args=(proc.stdout, log, echo, verbose), daemon=True)
        pump.start()
        stopped = False
        try:
            if on_start is not None:
                on_start(proc.pid)
            while proc.poll() is None:
                if should_stop():
                    stopped = True
                    stop_child(proc)
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=_POLL_SECONDS)
        finally:
            if proc.poll() is None:  # an exception in this process (a Ray cancel): the run stops too
                stopped = True
                stop_child(proc)
            pump.join()
            if stopped:
                log.write(f"\n===== {now()} interrupted\n")
        return proc.returncode, stopped


def _wait_for_lock(run_dir: Path, should_stop: Callable[[], bool], log_path: Path) -> None:
    """Wait until no process holds the run's lock (the attempt before this one may still be dying)."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    holder = run_lock_holder(run_dir)
    if holder is None:
        return
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n===== {now()} the run's lock is held by pid {holder}; waiting for it\n")
    while holder is not None and time.monotonic() < deadline and not should_stop():
        time.sleep(_POLL_SECONDS)
        holder = run_lock_holder(run_dir)


def _outcome(code: int, stopped: bool, run_dir: Path) -> str:
    if stopped:
        return "stopped"
    if code == 0 and is_finished(run_dir):
        return "finished"
    return "crashed" if code < 0 else "failed"


def _signal_name(code: int) -> str | None:
    if code >= 0:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def run_attempt(
    job: RunJob,
    worker: Mapping[str, Any],
    *,
    should_stop: Callable[[], bool] = lambda: False,
    echo: Callable[[str], None] | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Run one attempt of ``job`` here; record it in the run folder (when it starts and when it ends) and return
    its record: attempt, backend, worker, start and end (UTC), seconds, outcome, exit code, signal, the checkpoint
    it resumed from, the child's pid and thread settings."""
    run_dir = Path(job.run_dir)
    log_path = run_dir / LOG_FILE
    env = {**(os.environ if job.base_env is None else job.base_env), **job.env}
    entry: dict[str, Any] = {
        "session": job.session,
        "attempt": job.attempt,
        "of": job.max_attempts,
        "backend": job.backend,
        "worker": dict(worker),
        "resources": dict(job.resources),
        "threads": {k: env[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in env},
        "log": str(log_path),
        "outcome": "running",
    }
    if should_stop():  # stopped before it started (a queued Ray task): no start, nothing recorded
        return {**entry, "outcome": "stopped", "started_at": None, "ended_at": None, "seconds": 0.0}
    _wait_for_lock(run_dir, should_stop, log_path)
    checkpoint = last_complete_checkpoint(run_dir, remove_incomplete=False)
    entry.update(started_at=now(), resumes_from=checkpoint.name if checkpoint else None)
    t0 = time.perf_counter()

    def started(pid: int) -> None:
        entry["worker"]["run_pid"] = pid
        record_attempt(run_dir, entry)

    code, stopped = execute(
        job.command(), log_path, env, should_stop=should_stop, echo=echo, verbose=verbose, on_start=started
    )
    entry.update(
        ended_at=now(),
        seconds=round(time.perf_counter() - t0, 1),
        exit_code=code,
        signal=_signal_name(code),
        outcome=_outcome(code, stopped, run_dir),
    )
    record_attempt(run_dir, entry)
    return entry


def attempt_summary(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an attempt record that ``sweep_status.json`` keeps for its run."""
    return {k: entry.get(k) for k in ("backend", "worker", "started_at", "ended_at", "exit_code", "signal")}
