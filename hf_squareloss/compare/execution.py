"""Where and when a sweep's runs ran, for its report: the backend and Ray address of each session, and each run's
worker, start and end times (UTC) and attempts, as ``sweep_status.json`` records them.

Sweep folders written before these were recorded report without them (no key, no line): their ``results.json``
and ``RESULTS.md`` stay as they were.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["execution_section", "failed_runs", "run_execution", "sweep_execution"]

RUN_FIELDS = ("backend", "worker", "started_at", "ended_at", "attempts")


def failed_runs(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The runs that failed (after their retries), each with its error, log and attempts."""
    return [
        {"label": label, **{k: info.get(k) for k in ("dir", "error", "log", *RUN_FIELDS)}}
        for label, info in status.get("runs", {}).items()
        if info.get("state") == "failed"
    ]


def sweep_execution(status: Mapping[str, Any]) -> dict[str, Any]:
    """``{"backend": ..., "address": ..., "failed": [...]}``: the backend and address of the last session
    (``"local"``: a Ray started by the sweep; ``None``: the sequential backend) and the failed runs; ``{}`` for a
    status written before they were recorded."""
    if "backend" not in status:
        return {}
    return {"backend": status["backend"], "address": status.get("address"), "failed": failed_runs(status)}


def run_execution(status: Mapping[str, Any], run_dir: str) -> dict[str, Any]:
    """The recorded backend, worker, start, end and attempts of the run in ``run_dir`` (relative to the sweep
    folder); ``{}`` when none was recorded."""
    for info in status.get("runs", {}).values():
        if info.get("dir") == run_dir and "started_at" in info:
            return {k: info.get(k) for k in RUN_FIELDS}
    return {}


def _worker(worker: Mapping[str, Any] | None) -> str:
    if not worker:
        return "–"
    text = str(worker.get("hostname", "?"))
    if worker.get("node_id"):
        text += f" (node {str(worker['node_id'])[:8]})"
    if worker.get("run_pid"):
        text += f", pid {worker['run_pid']}"
    return text


def _clock(stamp: str | None) -> str:
    """``2026-12-04T17:39:02+00:00`` -> ``2026-12-04 17:39:02``."""
    return stamp.replace("T", " ").removesuffix("+00:00") if stamp else "–"


def execution_section(
    rows: Sequence[Mapping[str, Any]], folders: Sequence[tuple[Path, Mapping[str, Any]]]
) -> list[str]:
    """``## Where the runs ran``: each session's backend, and per run its worker, times and attempts; ``[]`` when
    no folder recorded them."""
    sessions = [
        (folder, s["backend"])
        for folder, status in folders
        for s in status.get("sessions", [])
        if "backend" in s
    ]
    if not sessions:
        return []
    lines = ["## Where the runs ran", ""]
    for folder, backend in sessions:
        where = (
            "this process" if backend.get("backend") == "sequential" else f"Ray at `{backend.get('address')}`"
        )
        extra = ""
        if backend.get("backend") == "ray":
            extra = (
                f", {len(backend.get('nodes', []))} node(s), {backend.get('cpus_per_run', 0):g} CPU(s) and "
                f"{backend.get('gpus_per_run', 0):g} GPU(s) per run, {backend.get('threads_per_run')} thread(s) "
                f"per run, up to {backend.get('max_retries')} retries"
            )
        lines.append(f"- `{folder}`: backend `{backend.get('backend')}` ({where}{extra}).")
    lines += ["", "| run | worker | started (UTC) | ended (UTC) | attempts |", "|---|---|---|---|---|"]
    statuses = {str(folder): status for folder, status in folders}
    default = folders[0][1] if folders else {}
    for row in rows:
        info = run_execution(statuses.get(str(row.get("root")), default), row["run_dir"])
        if not info:
            continue
        lines.append(
            f"| {row['run_dir']} | {_worker(info.get('worker'))} | {_clock(info.get('started_at'))} | "
            f"{_clock(info.get('ended_at'))} | {info.get('attempts') or 1} |"
        )
    lines.append("")
    for folder, status in folders:
        failed = failed_runs(status) if "backend" in status else []
        if failed:
            lines += [f"Failed runs of `{folder}` (not in the tables; each after its attempts):", ""]
            lines += [
                f"- {f['label']}: {f['error']}, {f.get('attempts') or 1} attempt(s); log `{f['log']}`"
                for f in failed
            ]
            lines.append("")
    return lines
