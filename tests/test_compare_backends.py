"""The sweep's runner behind its backends, without Ray: a stop signal acted on at a safe point (the cause of a lost
interrupt), crashed runs tried again from their checkpoint, runs that fail by themselves reported with their log,
what each attempt records, the backend options and the cluster's path rules, and that the default backend never
imports Ray. The toy family's recipe (``tests/toy_recipe.py``) stands in for a recipe: its runs take a second."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hf_squareloss.cli import main as cli_main
from hf_squareloss.compare.attempt import execute
from hf_squareloss.compare.backends import BackendOptions, check_cluster_paths
from hf_squareloss.compare.grid import SweepSpec
from hf_squareloss.compare.report import write_report
from hf_squareloss.compare.runner import run_sweep
from hf_squareloss.runs.families import FAMILY_TABLE, FamilyEntry
from hf_squareloss.runs.folder import RunLockedError, run_lock, run_lock_holder

TESTS = Path(__file__).parent
TOY_SWEEP = TESTS / "scripts" / "toy_sweep.py"


@pytest.fixture
def toy(monkeypatch) -> None:
    """The toy family in the table, and its recipe importable by the runs."""
    monkeypatch.setitem(FAMILY_TABLE, "toy", FamilyEntry(prefix="toy:", module="toy_family"))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    )


def _spec(*losses: str) -> SweepSpec:
    return SweepSpec(
        model_name_or_path="m", tasks=["toy:a"], losses=list(losses), seeds=[0], noise_rates=[0.0]
    )


def _run(root: Path, loss: str) -> Path:
    return root / "toy-a" / "early_stopping" / loss / "noise0" / "seed0"


def _label(loss: str) -> str:
    return f"toy:a early_stopping {loss} noise=0 seed=0"


def _attempts(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "sweep_attempts.json").read_text())["attempts"]


def _toy_sweep(
    root: Path, *args: str, plan: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOY_PLAN": json.dumps(plan or {})}
    return subprocess.run(
        [sys.executable, str(TOY_SWEEP), str(root), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_stop_signal_at_a_runs_start_stops_the_sweep(tmp_path: Path) -> None:
    """SIGTERM arriving while ``Popen`` runs the at-fork hooks: a handler that raised there had its exception
    "ignored" by Python, and the sweep went on to finish (the flaky ``test_sweep_interrupted_and_resumed``). The
    handler now only notes the signal; the runner stops the run and the sweep at its next check."""
    root = tmp_path / "sweep"
    done = _toy_sweep(root, "--sigterm_at_fork", plan={"ce": "slow"})
    assert done.returncode == 130, done.stdout + done.stderr
    assert "Exception ignored" not in done.stderr
    assert "sweep interrupted" in done.stdout
    status = json.loads((root / "sweep_status.json").read_text())
    assert status["runs"][_label("ce")]["state"] == "stopped"
    assert not (_run(root, "ce") / "run_summary.json").exists()
    assert not (_run(root, "square") / "run.log").exists()  # the next run never started


def test_crashed_runs_are_tried_again_and_failing_ones_reported(toy, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "sweep"
    monkeypatch.setenv("TOY_PLAN", json.dumps({"square": "crash_once", "tce": "fail"}))
    outcome = run_sweep(_spec("ce", "square", "tce"), root, out=open(os.devnull, "w"))  # noqa: SIM115
    assert outcome.finished == [_label("ce"), _label("square")]
    assert outcome.failed == [_label("tce")] and outcome.retried == [_label("square")]

    crashed, resumed = _attempts(_run(root, "square"))
    assert (crashed["outcome"], crashed["signal"], crashed["exit_code"]) == ("crashed", "SIGKILL", -9)
    assert (resumed["outcome"], resumed["resumes_from"], resumed["attempt"]) == (
        "finished",
        "checkpoint-1",
        2,
    )
    assert "resuming the interrupted run from" in (_run(root, "square") / "run.log").read_text()
    (failed,) = _attempts(_run(root, "tce"))  # failed by itself: not tried again
    assert (failed["outcome"], failed["exit_code"]) == ("failed", 3)
    for attempt in (crashed, resumed, failed):
        assert attempt["backend"] == "sequential" and attempt["worker"]["hostname"] == socket.gethostname()
        assert attempt["started_at"] <= attempt["ended_at"] and attempt["worker"]["run_pid"] > 0

    status = json.loads((root / "sweep_status.json").read_text())
    assert (status["backend"], status["address"]) == ("sequential", None)
    assert status["sessions"][-1]["backend"] == {"backend": "sequential", "address": None}
    square, tce = status["runs"][_label("square")], status["runs"][_label("tce")]
    assert square["state"] == "finished" and square["attempts"] == 2
    assert (
        tce["state"] == "failed"
        and tce["error"] == "exit code 3"
        and tce["log"].endswith("tce/noise0/seed0/run.log")
    )

    write_report(root)
    results = json.loads((root / "results.json").read_text())
    assert (results["sweep"]["backend"], results["sweep"]["address"]) == ("sequential", None)
    assert [f["label"] for f in results["sweep"]["failed"]] == [_label("tce")]
    rows = {r["loss_type"]: r for r in results["runs"]}
    assert (
        rows["square"]["attempts"] == 2
        and rows["square"]["worker"]["run_pid"] == resumed["worker"]["run_pid"]
    )
    assert rows["ce"]["started_at"] <= rows["ce"]["ended_at"] <= rows["square"]["started_at"]
    report = (root / "RESULTS.md").read_text()
    assert "## Where the runs ran" in report and "backend `sequential` (this process)" in report
    assert f"- {_label('tce')}: exit code 3, 1 attempt(s); log `{tce['log']}`" in report


def test_without_retries_a_crashed_run_is_failed(toy, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "sweep"
    monkeypatch.setenv("TOY_PLAN", json.dumps({"ce": "crash_once"}))
    outcome = run_sweep(_spec("ce"), root, out=open(os.devnull, "w"), backend=BackendOptions(max_retries=0))  # noqa: SIM115
    assert outcome.failed == [_label("ce")] and not outcome.retried
    status = json.loads((root / "sweep_status.json").read_text())
    assert status["runs"][_label("ce")]["error"] == "killed by SIGKILL"
    # the next start resumes it from its checkpoint
    outcome = run_sweep(_spec("ce"), root, out=open(os.devnull, "w"))  # noqa: SIM115
    assert outcome.finished == [_label("ce")]
    assert [a["resumes_from"] for a in _attempts(_run(root, "ce"))] == [None, "checkpoint-1"]
    assert [a["session"] for a in _attempts(_run(root, "ce"))] == [1, 2]


def test_a_dead_runs_lock_is_free_and_a_live_ones_is_not(tmp_path: Path) -> None:
    """What a retry relies on: the lock of a run whose process was SIGKILLed is free, a live holder is seen."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from hf_squareloss.runs.folder import run_lock\n"
            "with run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run_lock_holder(tmp_path) == str(holder.pid)
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"), run_lock(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()
    assert run_lock_holder(tmp_path) is None  # killed: the kernel released its lock
    with run_lock(tmp_path):
        assert run_lock_holder(tmp_path) == str(os.getpid())


def test_backend_options_refuse_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match=r"--backend must be one of \['sequential', 'ray'\]"):
        BackendOptions(name="dask")
    with pytest.raises(ValueError, match=r"--ray_address, --cpus_per_run: for --backend ray only"):
        BackendOptions(ray_address="h:6379", cpus_per_run=2)
    with pytest.raises(ValueError, match="--max_retries must be >= 0"):
        BackendOptions(max_retries=-1)
    with pytest.raises(ValueError, match="--cpus_per_run must be > 0"):
        BackendOptions(name="ray", cpus_per_run=0)
    with pytest.raises(ValueError, match="--num_cpus sizes the local Ray"):
        BackendOptions(name="ray", num_cpus=2, ray_address="h:6379")
    assert BackendOptions(name="ray", cpus_per_run=2.5).threads_per_run == 2
    assert BackendOptions(name="ray", cpus_per_run=0.5).threads_per_run == 1


def test_a_cluster_refuses_relative_paths(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    base = ["compare", "--model_name_or_path", "resnet20", "--tasks", "vision:digits", "--backend", "ray"]
    code = cli_main(
        [*base, "--ray_address", "10.0.0.1:6379", "--output_dir", "sweeps/x", "--data_root", "/d"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "every node of the cluster mounts" in err and "--output_dir 'sweeps/x'" in err and "/d" not in err
    assert not (tmp_path / "sweeps").exists()
    (tmp_path / "cfg").touch()
    with pytest.raises(
        ValueError, match=r"--data_root 'data', --model_name_or_path 'models/tiny', .*'\./cfg'"
    ):
        check_cluster_paths("/s/x", "data", "models/tiny", ["--train_dir", "/abs", "--config=./cfg"])
    with pytest.raises(ValueError, match=r"relative: recipe argument 'cfg'$"):
        check_cluster_paths("/s/x", "/data", "bert-base-uncased", ["--config", "cfg", "--note", "not_a_file"])
    check_cluster_paths(
        "/s/x", "/data", "bert-base-uncased", ["--learning_rate", "5e-5", "--config", "/abs/cfg"]
    )


def test_the_default_backend_never_imports_ray(tmp_path: Path) -> None:
    """``compare`` with the default backend runs a grid and reports it without importing Ray."""
    code = (
        "import sys\n"
        "from hf_squareloss.runs.families import register_family\n"
        "register_family('toy', 'toy:', 'toy_family')\n"
        "from hf_squareloss.cli import main\n"
        "code = main(['compare', '--output_dir', sys.argv[1], '--model_name_or_path', 'm', '--tasks', 'toy:a',\n"
        "             '--losses', 'ce', '--seeds', '0', '--noise', '0'])\n"
        "print('ray imported:', 'ray' in sys.modules, 'code:', code)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "s")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "ray imported: False code: 0" in done.stdout, done.stdout + done.stderr
    assert (tmp_path / "s" / "toy-a/early_stopping/ce/noise0/seed0/run_summary.json").is_file()
    # the check sees an import of Ray (the Ray backend's module imports it)
    if importlib.util.find_spec("ray") is not None:
        with_ray = code.replace("import main\n", "import main\nimport hf_squareloss.compare.ray_backend\n")
        done = subprocess.run(
            [sys.executable, "-c", with_ray, str(tmp_path / "r")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert "ray imported: True code: 0" in done.stdout, done.stdout + done.stderr


def test_a_stop_reaches_a_run_started_by_a_thread_with_sigint_blocked(tmp_path: Path) -> None:
    """A Ray worker's thread blocks SIGINT and a child inherits the mask: the run must unblock it, or the polite
    stop (SIGINT) would be held back until the SIGTERM 10 s later."""
    probe = "import signal; print(sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])))"
    slow = "import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    print('polite stop')"
    seen: list = []

    def in_a_thread_with_sigint_blocked() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
        seen.append(execute([sys.executable, "-c", probe], tmp_path / "probe.log", dict(os.environ)))
        started = time.monotonic()
        stop_after_2s = lambda: time.monotonic() > started + 2  # noqa: E731
        seen.append(
            execute(
                [sys.executable, "-c", slow],
                tmp_path / "slow.log",
                dict(os.environ),
                should_stop=stop_after_2s,
            )
        )
        seen.append(time.monotonic() - started)

    thread = threading.Thread(target=in_a_thread_with_sigint_blocked)
    thread.start()
    thread.join()
    assert seen[0] == (0, False) and (tmp_path / "probe.log").read_text().strip().endswith("[]")
    assert seen[1] == (0, True)  # stopped, and it exited by itself after the SIGINT
    assert seen[2] < 9  # no wait for the SIGTERM
    assert "polite stop" in (tmp_path / "slow.log").read_text()


def test_the_ray_backend_without_ray_is_refused_by_name(tmp_path: Path, monkeypatch, capsys) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    argv = ["compare", "--output_dir", str(tmp_path / "s"), "--model_name_or_path", "resnet20"]
    assert cli_main([*argv, "--tasks", "vision:digits", "--backend", "ray"]) == 2
    assert 'needs Ray: pip install "hf-squareloss[ray]"' in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
