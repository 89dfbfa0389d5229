"""Running a comparison grid one run after another, resumably.

* a finished run (its ``run_summary.json``) is never recomputed nor overwritten;
* a half-finished run is started again with the same command: the recipe resumes it from its last checkpoint;
* a run whose stored command differs from the planned one is an error (the grid's settings changed), so that a
  sweep folder never mixes settings;
* each run is a child process (``python -m <the recipe of its task's family>``, e.g. ``hf_squareloss.glue.run``,
  or the ``--launcher`` given, e.g. ``accelerate launch --num_processes 8``); its output goes to ``<run>/run.log``
  and its progress lines to the console;
* a failed run is reported and the sweep goes on; a ``same_epochs`` run waits for its reference.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from ..runs.console import PROGRESS_PREFIX
from ..runs.folder import is_finished, read_json, run_lock, write_json
from .grid import RunSpec, SweepSpec, accelerate_form, single_process_form

__all__ = ["SweepInterrupted", "SweepOutcome", "run_sweep", "write_commands"]

SWEEP_FILE = "sweep.json"
STATUS_FILE = "sweep_status.json"
RUN_COMMAND_FILE = "sweep_run.json"
LOG_FILE = "run.log"
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


class SweepInterrupted(KeyboardInterrupt):
    """The sweep was stopped (Ctrl-C or SIGTERM); rerun the same command to continue."""


@dataclass
class SweepOutcome:
    finished: list[str] = field(default_factory=list)
    """Runs finished in this session."""
    kept: list[str] = field(default_factory=list)
    """Runs already finished before (not recomputed)."""
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
    """``sweep_status.json``: what is finished, failed or running, and the sessions' wall time."""

    def __init__(self, root: Path, command: str, total: int) -> None:
        self.path = root / STATUS_FILE
        data = read_json(self.path) if self.path.is_file() else {}
        self.data: dict[str, Any] = {
            "command": command,
            "environment": {k: os.environ[k] for k in _RECORDED_ENV if k in os.environ},
            "planned": total,
            "runs": data.get("runs", {}),
            "sessions": data.get("sessions", []),
        }
        self.data["sessions"].append(
            {"started_at": _now(), "ended_at": None, "seconds": 0.0, "command": command}
        )
        self.started = time.perf_counter()
        self.save()

    def set_run(self, label: str, **info: Any) -> None:
        self.data["runs"].setdefault(label, {}).update(info)
        self.save()

    def save(self, running: str | None = None) -> None:
        session = self.data["sessions"][-1]
        session["ended_at"] = _now()
        session["seconds"] = round(time.perf_counter() - self.started, 1)
        self.data["running"] = running
        self.data["wall_seconds_all_sessions"] = round(sum(s["seconds"] for s in self.data["sessions"]), 1)
        states = [r.get("state") for r in self.data["runs"].values()]
        self.data["counts"] = {s: states.count(s) for s in ("finished", "failed", "skipped")}
        write_json(self.path, self.data)


def _launcher_argv(launcher: str | None, argv: Sequence[str], module: str) -> list[str]:
    if not launcher:
        return single_process_form(argv, module)
    return [*shlex.split(launcher), "-m", module, *argv]


def _execute(
    command: list[str], log_path: Path, echo: Callable[[str], None], verbose: bool, env: dict[str, str]
) -> int:
    """Run ``command``, appending its output to ``log_path``; echo progress lines. Return the exit code."""
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n===== {_now()} {shlex.join(command)}\n")
        log.flush()
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=env,
            errors="replace",
            preexec_fn=_interruptible if os.name == "posix" else None,
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if verbose or line.startswith(PROGRESS_PREFIX):
                    echo(line.rstrip("\n"))
            return proc.wait()
        except BaseException:
            _stop(proc)
            log.write(f"\n===== {_now()} interrupted\n")
            raise


def _interruptible() -> None:
    """In the child, before it starts: SIGINT back to its default, so that :func:`_stop`'s polite SIGINT reaches the
    run even when this sweep was started with SIGINT ignored (a background job of a shell script, say)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop(proc: subprocess.Popen) -> None:
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


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise SweepInterrupted(f"signal {signum}")


def _run_one(
    run: RunSpec,
    argv: list[str],
    root: Path,
    tag: str,
    launcher: str | None,
    verbose: bool,
    env: dict[str, str],
    echo: Callable[[str], None],
) -> tuple[str, dict[str, Any]]:
    """Run (or resume) one run of the grid; return its state (``finished`` or ``failed``) and details."""
    run_dir = root / run.relpath
    run_dir.mkdir(parents=True, exist_ok=True)
    resumed = (run_dir / RUN_COMMAND_FILE).is_file()
    write_json(run_dir / RUN_COMMAND_FILE, {"argv": argv, "written_at": _now()})
    echo(f"{tag}: {'starting again' if resumed else 'starting'} (log: {run_dir / LOG_FILE})")
    t0 = time.perf_counter()
    code = _execute(
        _launcher_argv(launcher, argv, run.module), run_dir / LOG_FILE, lambda s: echo(f"  {s}"), verbose, env
    )
    seconds = round(time.perf_counter() - t0, 1)
    if code == 0 and is_finished(run_dir):
        return "finished", {"seconds": seconds}
    echo(
        f"{tag}: FAILED (exit code {code}); last lines of {run_dir / LOG_FILE}:\n{_tail(run_dir / LOG_FILE)}"
    )
    return "failed", {"seconds": seconds, "exit_code": code}


def run_sweep(
    spec: SweepSpec,
    root: str | os.PathLike,
    *,
    launcher: str | None = None,
    verbose: bool = False,
    out: TextIO | None = None,
    command: str | None = None,
    env: dict[str, str] | None = None,
) -> SweepOutcome:
    """Run every planned run not yet finished under ``root``; see the module docstring."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    stream = out or sys.stdout

    def echo(text: str) -> None:
        print(text, file=stream, flush=True)

    runs = spec.runs()
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    outcome = SweepOutcome()
    status: _Status | None = None
    started = time.perf_counter()
    try:  # SIGTERM (kill, a job scheduler) stops the sweep as Ctrl-C does
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        with run_lock(root, SWEEP_LOCK):
            _check_sweep_file(root, spec)
            planned = [(run, spec.recipe_argv(run, root)) for run in runs]
            for run, argv in planned:  # all checks before any work
                _check_stored_command(root / run.relpath, argv, run.label)
            write_commands(root, spec)
            status = _Status(root, command or "", len(runs))
            todo = sum(not is_finished(root / r.relpath) for r in runs)
            echo(
                f"sweep {root}: {len(runs)} runs, {len(runs) - todo} already finished, {todo} to do. "
                f"Per-run commands and their `accelerate launch` forms: {root / 'commands.sh'}"
            )
            if planned:
                echo(f"  e.g. on several GPUs: {accelerate_form(planned[0][1], module=planned[0][0].module)}")
            for i, (run, argv) in enumerate(planned, start=1):
                tag = f"[{i}/{len(runs)}] {run.label}"
                if is_finished(root / run.relpath):
                    outcome.kept.append(run.label)
                    status.set_run(run.label, state="finished", dir=str(run.relpath))
                    continue
                reference = run.reference()
                if reference is not None and not is_finished(root / reference.relpath):
                    echo(f"{tag}: skipped, its reference ({reference.label}) is not finished")
                    outcome.skipped.append(run.label)
                    status.set_run(run.label, state="skipped", dir=str(run.relpath))
                    continue
                status.save(running=run.label)
                state, details = _run_one(run, argv, root, tag, launcher, verbose, child_env, echo)
                status.set_run(run.label, state=state, dir=str(run.relpath), **details)
                if state == "failed":
                    outcome.failed.append(run.label)
                    continue
                outcome.finished.append(run.label)
                done = sum(is_finished(root / r.relpath) for r in runs)
                left = (time.perf_counter() - started) / len(outcome.finished) * (len(runs) - done)
                echo(
                    f"{tag}: finished in {details['seconds']:.0f}s ({done}/{len(runs)} done, about "
                    f"{left / 60:.0f} min left)"
                )
            status.save()
    except KeyboardInterrupt:
        if status is not None:
            status.save()
        echo("sweep interrupted: finished runs are kept; rerun the same command to continue where it stopped")
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        outcome.wall_seconds = time.perf_counter() - started
    return outcome
