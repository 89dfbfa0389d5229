"""``hf-squareloss compare`` as a user runs it: a real sweep, interrupted and resumed, then refused other settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_glue_recipe import build_tiny_model

from hf_squareloss.cli import main as cli_main


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, shared_model) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"), shared_model("paraphrase-MiniLM-L3-v2"))


RUN_START = "===== "  # the runner's marker of each start of a run in run.log


def _compare(root: Path, model: Path, data_root: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hf_squareloss.cli",
        "compare",
        "--output_dir",
        str(root),
        "--model_name_or_path",
        str(model),
        "--tasks",
        "mrpc",
        "--losses",
        "ce",
        "square",
        "--seeds",
        "0",
        "--noise",
        "0",
        "--data_root",
        str(data_root),
        "--max_train_samples",
        "48",
        "--max_eval_samples",
        "16",
        *extra,
        "--",
        "--num_train_epochs",
        "2",
        "--max_seq_length",
        "32",
        "--use_cpu",
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def _recorded_finished(root: Path, label: str) -> bool:
    try:
        status = json.loads((root / "sweep_status.json").read_text())
    except (OSError, ValueError):  # not written yet
        return False
    return status["runs"].get(label, {}).get("state") == "finished"


def _starts(log: Path) -> int:
    return sum(
        line.startswith(RUN_START) and " -m hf_squareloss.glue.run " in line
        for line in log.read_text().splitlines()
    )


@pytest.mark.slow
def test_sweep_interrupted_and_resumed(tiny_model, shared_data, tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    data_root = shared_data("glue")
    first = root / "mrpc/early_stopping/ce/noise0/seed0"
    proc = subprocess.Popen(
        _compare(root, tiny_model, data_root),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not _recorded_finished(root, "mrpc early_stopping ce noise=0 seed=0"):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "the first run did not finish in time"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # as `kill` or a scheduler would
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "[1/2] mrpc early_stopping ce noise=0 seed=0: finished" in output  # progress is shown
    assert "[hf-squareloss] epoch 1/2" in output
    assert "rerun the same command to continue" in output
    status = json.loads((root / "sweep_status.json").read_text())
    assert status["runs"]["mrpc early_stopping ce noise=0 seed=0"]["state"] == "finished"
    kept = (first / "run_summary.json").read_bytes()
    kept_mtime = (first / "run_summary.json").stat().st_mtime_ns
    assert not (root / "mrpc/early_stopping/square/noise0/seed0/run_summary.json").exists()

    done = subprocess.run(
        _compare(root, tiny_model, data_root), env=_env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 runs, 1 already finished, 1 to do" in done.stdout
    for loss in ("ce", "square"):
        assert (root / f"mrpc/early_stopping/{loss}/noise0/seed0/run_summary.json").is_file()
    # the finished run was neither recomputed nor rewritten
    assert (first / "run_summary.json").read_bytes() == kept
    assert (first / "run_summary.json").stat().st_mtime_ns == kept_mtime
    assert _starts(first / "run.log") == 1
    # the run cut short was started again (and resumed from a checkpoint when it had written one)
    assert 1 <= _starts(root / "mrpc/early_stopping/square/noise0/seed0/run.log") <= 2
    status = json.loads((root / "sweep_status.json").read_text())
    assert status["counts"]["finished"] == 2 and len(status["sessions"]) == 2
    for name in ("results.csv", "results.json", "RESULTS.md", "accuracy_vs_noise.png", "commands.sh"):
        assert (root / name).is_file(), name
    assert "accelerate launch --num_processes" in (root / "commands.sh").read_text()


def test_dry_run_prints_every_command_and_its_accelerate_form(tmp_path: Path, capsys) -> None:
    argv = [
        "compare",
        "--output_dir",
        str(tmp_path / "s"),
        "--model_name_or_path",
        "m",
        "--tasks",
        "mrpc",
        "qnli",
    ]
    code = cli_main([*argv, "--seeds", "0", "1", "--dry_run"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(" -m hf_squareloss.glue.run " in x and not x.startswith("#") for x in lines) == 2 * 4 * 2 * 2
    assert sum(x.startswith("# accelerate launch --num_processes") for x in lines) == 32
    assert lines[-1] == "# 32 runs"
    assert not (tmp_path / "s").exists()


def test_bad_recipe_arguments_fail_before_any_run(tmp_path: Path, capsys) -> None:
    argv = ["compare", "--output_dir", str(tmp_path / "s"), "--model_name_or_path", "m", "--tasks", "mrpc"]
    assert cli_main([*argv, "--", "--no_such_flag", "3"]) == 2
    err = capsys.readouterr().err
    assert "the recipe refuses the arguments" in err and "--no_such_flag" in err
    assert cli_main([*argv, "--", "--seed", "3"]) == 2
    assert "--seed is set by the sweep for each run" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_a_run_started_with_sigint_ignored_still_gets_the_polite_stop(tmp_path: Path) -> None:
    """A sweep started as a background job of a script inherits SIGINT ignored; its runs must not, or the polite
    SIGINT of an interrupted sweep would be lost and the run would go on until the SIGTERM that follows."""
    from hf_squareloss.compare.attempt import execute

    probe = "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code, stopped = execute([sys.executable, "-c", probe], tmp_path / "log", dict(os.environ))
        ignored_without = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 0 and not stopped
    assert ignored_without.strip() == "True"  # what the child would inherit without the reset
    assert (tmp_path / "log").read_text().strip().endswith("False")
