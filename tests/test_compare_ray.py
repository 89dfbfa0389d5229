"""``hf-squareloss compare --backend ray`` on a local Ray of 2 CPUs, each sweep in a process of its own (its Ray
starts and stops with it): the same runs as the sequential runner, to the bit; runs killed in the middle (the
recipe's process, or the Ray worker running it) tried again and finished from their checkpoint with the weights
of an uninterrupted run; runs that fail by themselves reported; an interrupted sweep stopped politely, its Ray
stopped, and resumed. Skipped where Ray is not installed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.ray

from test_compare_backends import TOY_SWEEP, _attempts, _label, _run  # noqa: E402
from vision_data import write_digit_folders  # noqa: E402

from hf_squareloss.compare.ray_backend import unshared_nodes  # noqa: E402

RECIPE = ["--num_train_epochs", "6", "--lr_milestones", "3", "4.5", "--per_device_train_batch_size", "20"]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **extra}


def _compare(root: Path, data_root: Path, *extra: str) -> list[str]:
    """ResNet-20 on 600 digit images of 8x8, ce and square, 6 epochs with a checkpoint each: runs of 10-20 s."""
    return [
        sys.executable, "-m", "hf_squareloss.cli", "compare", "--output_dir", str(root),
        "--model_name_or_path", "resnet20", "--tasks", "vision:digits", "--data_root", str(data_root),
        "--losses", "ce", "square", "--seeds", "0", "--noise", "0.2", "--noise_type", "uniform",
        "--protocols", "tce_paper", *extra, "--", *RECIPE, "--use_cpu",
    ]  # fmt: skip


def _vision_run(root: Path, loss: str) -> Path:
    return root / "vision-digits" / "tce_paper" / loss / "noise0.2" / "seed0"


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    write_digit_folders(root / "digits", size=8, per_class=(60, 10, 10))
    return root


@pytest.fixture(scope="module")
def sequential(digits, tmp_path_factory) -> Path:
    """The grid on the sequential runner: the reference."""
    root = tmp_path_factory.mktemp("sequential") / "sweep"
    done = subprocess.run(_compare(root, digits), env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root


def _same_run(run: Path, reference: Path) -> None:
    """The same numbers and the same weights, to the bit."""
    from safetensors.torch import load_file

    mine, theirs = (json.loads((p / "run_summary.json").read_text()) for p in (run, reference))
    for key in ("eval_metrics", "test_metrics", "history", "model_epoch", "best_epoch", "label_noise"):
        assert mine[key] == theirs[key], key
    weights, expected = load_file(run / "model.safetensors"), load_file(reference / "model.safetensors")
    assert weights.keys() == expected.keys()
    assert all(weights[name].equal(expected[name]) for name in expected)


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()


@pytest.mark.slow
def test_a_ray_sweep_gives_the_sequential_runs_results(digits, sequential, tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    done = subprocess.run(
        _compare(root, digits, "--backend", "ray", "--num_cpus", "2", "--cpus_per_run", "1"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Ray 2." in done.stdout and "at local: 1 node(s), 2 CPUs" in done.stdout
    assert "  [1/2] [hf-squareloss] epoch 6/6" in done.stdout  # progress lines, read from the run's log
    spans = []
    for loss in ("ce", "square"):
        _same_run(_vision_run(root, loss), _vision_run(sequential, loss))
        (attempt,) = _attempts(_vision_run(root, loss))
        assert attempt["backend"] == "ray" and attempt["outcome"] == "finished"
        assert attempt["threads"] == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        assert attempt["resources"] == {"cpus": 1.0, "gpus": 0.0} and attempt["worker"]["node_id"]
        spans.append((_seconds(attempt["started_at"]), _seconds(attempt["ended_at"])))
    (a0, a1), (b0, b1) = spans
    assert a0 < b1 and b0 < a1, spans  # the two runs ran side by side
    results = json.loads((root / "results.json").read_text())
    assert (results["sweep"]["backend"], results["sweep"]["address"]) == ("ray", "local")
    assert results["sweep"]["sessions"][-1]["backend"]["threads_per_run"] == 1
    assert all(r["worker"]["node_id"] and r["attempts"] == 1 for r in results["runs"])
    assert "backend `ray` (Ray at `local`, 1 node(s), 1 CPU(s)" in (root / "RESULTS.md").read_text()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_for_checkpoint(run_dir: Path, deadline: float) -> dict:
    """The first attempt's record once the run has written a complete checkpoint."""
    while time.monotonic() < deadline:
        assert not (run_dir / "run_summary.json").exists(), "the run finished before it could be killed"
        try:
            attempts = _attempts(run_dir)
        except (OSError, ValueError):
            attempts = []
        if attempts and any(run_dir.glob("checkpoint-*/trainer_state.json")):
            return attempts[0]
        time.sleep(0.1)
    raise AssertionError(f"no checkpoint in {run_dir} in time")


@pytest.mark.slow
def test_killed_runs_finish_from_their_checkpoint_with_the_uninterrupted_weights(
    digits, sequential, tmp_path: Path
) -> None:
    """SIGKILL the recipe's process of one run and the Ray worker of the other, once each has a checkpoint: both
    are tried again, resume from their checkpoint, and end with the weights of the uninterrupted runs."""
    root = tmp_path / "sweep"
    sweep = subprocess.Popen(
        _compare(root, digits, "--backend", "ray", "--num_cpus", "2", "--max_retries", "1"),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        ce = _wait_for_checkpoint(_vision_run(root, "ce"), deadline)
        os.kill(ce["worker"]["run_pid"], signal.SIGKILL)  # the recipe's process
        square = _wait_for_checkpoint(_vision_run(root, "square"), deadline)
        os.kill(square["worker"]["pid"], signal.SIGKILL)  # the Ray worker running it
        output, _ = sweep.communicate(timeout=900)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 0, output[-4000:]
    assert (
        "attempt 1 crashed (killed by SIGKILL)" in output and "attempt 1 lost (WorkerCrashedError" in output
    )
    for _ in range(50):  # the run of the killed worker died with it (it would hold the run's lock)
        if not _alive(square["worker"]["run_pid"]):
            break
        time.sleep(0.1)
    assert not _alive(square["worker"]["run_pid"])

    for loss, first in (("ce", ("crashed", "SIGKILL")), ("square", ("lost", None))):
        run = _vision_run(root, loss)
        killed, retried = _attempts(run)
        assert (killed["outcome"], killed.get("signal")) == first
        assert retried["outcome"] == "finished" and retried["attempt"] == 2
        assert retried["resumes_from"] and retried["resumes_from"].startswith("checkpoint-")
        assert (
            f"resuming the interrupted run from {run / retried['resumes_from']}"
            in (run / "run.log").read_text()
        )
        _same_run(run, _vision_run(sequential, loss))
    lost = _attempts(_vision_run(root, "square"))[0]
    assert lost["error"].startswith("WorkerCrashedError") and lost["worker"]["pid"] == square["worker"]["pid"]
    status = json.loads((root / "sweep_status.json").read_text())
    assert [
        status["runs"][f"vision:digits tce_paper {loss} noise=0.2 seed=0"]["attempts"]
        for loss in ("ce", "square")
    ] == [2, 2]


def _toy(root: Path, *args: str) -> list[str]:
    """A toy sweep on a local Ray of 2 CPUs (what its runs do: ``TOY_PLAN``, see ``tests/toy_recipe.py``)."""
    return [sys.executable, str(TOY_SWEEP), str(root), "--backend", "ray", "--num_cpus", "2", *args]


def test_on_ray_a_failing_run_is_reported_and_the_grid_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    plan = {"square": "crash_once", "tce": "fail"}
    done = subprocess.run(
        _toy(root, "--losses", "ce", "square", "tce", "softmax_mse"),
        env=_env(TOY_PLAN=json.dumps(plan)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    outcome = json.loads(done.stdout.split("OUTCOME ", 1)[1])
    assert sorted(outcome["finished"]) == sorted(_label(loss) for loss in ("ce", "square", "softmax_mse"))
    assert outcome["failed"] == [_label("tce")] and outcome["retried"] == [_label("square")]
    (failed,) = _attempts(_run(root, "tce"))
    assert (failed["outcome"], failed["exit_code"], failed["backend"]) == ("failed", 3, "ray")
    assert "this run fails by itself" in done.stdout  # the last lines of its log, on the console
    crashed, resumed = _attempts(_run(root, "square"))
    assert (crashed["outcome"], resumed["outcome"], resumed["resumes_from"]) == (
        "crashed",
        "finished",
        "checkpoint-1",
    )
    results = json.loads((root / "results.json").read_text())
    assert results["sweep"]["failed"][0]["error"] == "exit code 3"
    assert results["sweep"]["failed"][0]["log"] == str(_run(root, "tce") / "run.log")


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _ray_processes_of(driver: int) -> list[int]:
    """The processes of the local Ray that the process ``driver`` started (its session folder ends with its pid)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and f"_{driver}/" in command and "/tmp/ray/session_" in command:
            found.append(int(proc.name))
    return found


def test_an_interrupted_ray_sweep_stops_its_runs_politely_and_resumes(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    slow = {"ce": "slow", "square": "slow", "tce": "slow"}
    sweep = subprocess.Popen(
        _toy(root, "--losses", "ce", "square", "tce"),
        env=_env(TOY_PLAN=json.dumps(slow)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        runs = [_run(root, loss) for loss in ("ce", "square")]
        while not all("still working" in _text(r / "run.log") for r in runs):  # both runs at work
            assert sweep.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        assert _ray_processes_of(sweep.pid)  # its local Ray runs
        pids = [_attempts(r)[0]["worker"]["run_pid"] for r in runs]
        stopped_at = time.monotonic()
        sweep.send_signal(signal.SIGTERM)
        output, _ = sweep.communicate(timeout=120)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 130, output[-3000:]
    # the polite stop worked: no forced cancel (after 45 s)
    assert time.monotonic() - stopped_at < 30
    assert "sweep interrupted" in output
    assert not any(_alive(pid) for pid in pids)
    for _ in range(50):  # the local Ray it started is stopped
        if not _ray_processes_of(sweep.pid):
            break
        time.sleep(0.2)
    assert not _ray_processes_of(sweep.pid)
    status = json.loads((root / "sweep_status.json").read_text())
    for run, loss in zip(runs, ("ce", "square"), strict=True):
        assert "[hf-squareloss] stopped by SIGINT" in (run / "run.log").read_text()
        assert status["runs"][_label(loss)]["state"] == "stopped"
        assert _attempts(run)[0]["outcome"] == "stopped"
    assert _label("tce") not in status["runs"]  # queued, never started: left as it was

    done = subprocess.run(
        _toy(root, "--losses", "ce", "square", "tce"), env=_env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert json.loads(done.stdout.split("OUTCOME ", 1)[1])["finished"] == [
        _label(x) for x in ("ce", "square", "tce")
    ]
    for run in runs:
        assert [(a["session"], a["outcome"]) for a in _attempts(run)] == [(1, "stopped"), (2, "finished")]


def test_a_folder_some_node_cannot_read_is_named() -> None:
    answers = {
        "a" * 20: {"content": "tok", "hostname": "head"},
        "b" * 20: {"content": None, "error": "FileNotFoundError: [Errno 2] ...", "hostname": "worker-2"},
        "c" * 20: {"content": "other", "hostname": "worker-3"},
    }
    assert unshared_nodes("tok", answers) == [
        f"worker-2 (node {'b' * 12}): FileNotFoundError: [Errno 2] ...",
        f"worker-3 (node {'c' * 12}): another content",
    ]
