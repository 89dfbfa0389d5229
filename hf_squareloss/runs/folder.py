"""The files of a recipe run's output folder, how they are written, and how a finished run is read back.

Every recipe (GLUE, images) writes the same folder. It holds, besides the model, its tokenizer or image processor
and ``config.json`` (with the ``hf_squareloss`` loss record and the task's ``id2label``):

``run_args.json``      every parsed argument (model, data, label noise, protocol, training; tokens removed),
                       written when the run starts;
``dataset.json``       the task and where its data came from (Hub dataset and config, or local files), the
                       splits used and their label counts;
``label_noise.json``   the noise settings, the realised rate and the flipped rows (only with label noise);
``train_results.json``, ``eval_results.json``, ``test_results.json`` (with ``--do_predict``),
``all_results.json``, ``trainer_state.json``: as in the ``transformers`` examples (``trainer_state.json`` holds the
                       per-epoch evaluation history);
``reliability.png``    (GLUE) the reliability diagram of the served probabilities on the first validation split
                       (before and after calibration with ``--calibrate``);
``run_summary.json``   the headline numbers and the per-epoch history, written last: its presence means that
                       the run finished. A finished run is never overwritten.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..model_card import eval_history

__all__ = [
    "DATASET_FILE",
    "LABEL_NOISE_FILE",
    "RELIABILITY_FILE",
    "RUN_ARGS_FILE",
    "SUMMARY_FILE",
    "RunLockedError",
    "best_eval_entry",
    "eval_history",
    "is_finished",
    "last_complete_checkpoint",
    "read_json",
    "read_summary",
    "run_lock",
    "run_lock_holder",
    "write_json",
]

RUN_ARGS_FILE = "run_args.json"
DATASET_FILE = "dataset.json"
LABEL_NOISE_FILE = "label_noise.json"
SUMMARY_FILE = "run_summary.json"
RELIABILITY_FILE = "reliability.png"
LOCK_FILE = ".run.lock"


def _plain(value: Any) -> Any:
    """JSON-safe form: non-finite floats become ``None``; tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON atomically (a temporary file renamed over ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(_plain(data), fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: str | os.PathLike) -> Any:
    """The JSON content of ``path``."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def is_finished(run_dir: str | os.PathLike) -> bool:
    """True when ``run_dir`` holds a finished run (its ``run_summary.json``)."""
    return (Path(run_dir) / SUMMARY_FILE).is_file()


def read_summary(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``run_summary.json`` of a finished run; ``ValueError`` when the run is not finished."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        raise ValueError(f"{run_dir} is not a finished run of a recipe (no {SUMMARY_FILE})")
    return read_json(path)


def best_eval_entry(
    history: Sequence[Mapping[str, Any]], metric: str, greater_is_better: bool = True
) -> dict[str, Any] | None:
    """The first evaluation with the best ``metric`` (``eval_`` prefix optional), as the Trainer picks it."""
    key = metric if metric.startswith("eval_") else f"eval_{metric}"
    best: Mapping[str, Any] | None = None
    for entry in history:
        value = entry.get(key)
        if value is None:
            continue
        if best is None or (value > best[key] if greater_is_better else value < best[key]):
            best = entry
    return dict(best) if best is not None else None


def last_complete_checkpoint(run_dir: str | os.PathLike, remove_incomplete: bool = True) -> Path | None:
    """The latest ``checkpoint-<step>`` folder that was completely written, or ``None``.

    The Trainer writes ``trainer_state.json`` last into a checkpoint; a folder without it was cut short by an
    interruption and cannot be resumed from. Later such folders are removed with ``remove_incomplete`` (nothing
    in them is usable; only the main process of a distributed run should remove them).
    """
    run_dir = Path(run_dir)
    found: list[tuple[int, Path]] = []
    for folder in run_dir.glob("checkpoint-*"):
        step = folder.name.removeprefix("checkpoint-")
        if folder.is_dir() and step.isdigit():
            found.append((int(step), folder))
    for _, folder in sorted(found, reverse=True):
        if (folder / "trainer_state.json").is_file():
            return folder
        if remove_incomplete:
            shutil.rmtree(folder, ignore_errors=True)
    return None


class RunLockedError(RuntimeError):
    """Another process is writing to the same run folder."""


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, lock_name: str = LOCK_FILE) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir`` so that two processes never write the same run (or sweep).

    The lock is released when the holder exits, however it exits. Where ``fcntl`` is missing (Windows) no lock
    is taken.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux/macOS
        yield
        return
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / lock_name, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise RunLockedError(
                f"{run_dir} is being written by another process (pid {holder}); wait for it or stop it"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def run_lock_holder(run_dir: str | os.PathLike, lock_name: str = LOCK_FILE) -> str | None:
    """Who holds the lock of :func:`run_lock` on ``run_dir``: the pid it wrote (``"unknown"`` if none), or ``None``
    when the lock is free. Nothing is taken: the lock is only tried, then released at once.

    The lock is ``flock``: the kernel releases it when its holder exits, however it exits (a run killed with
    SIGKILL leaves a free lock). On NFS, Linux emulates ``flock`` with the server's byte-range locks, so a holder
    on another machine is seen too, and the lock of a machine that vanished is freed when the server's lease of it
    ends (90 s by default with NFSv4).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux/macOS
        return None
    path = Path(run_dir) / lock_name
    if not path.is_file():
        return None
    with open(path, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            return fh.read().strip() or "unknown"
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return None
