"""The main job, end to end through the console script, in a small setting."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    exe = shutil.which("hf-squareloss")
    assert exe, "the console script is installed with the package"
    out = tmp_path / "demo"
    cmd = [
        exe,
        "demo",
        "--output-dir",
        str(out),
        "--seeds",
        "0",
        "1",
        "--epochs",
        "8",
        "--max-train-samples",
        "400",
        "--noise",
        "0",
        "0.4",
        "--losses",
        "ce",
        "square",
        "tce",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| ce |" in proc.stdout and "| square |" in proc.stdout and "| tce |" in proc.stdout
    result = json.loads((out / "results.json").read_text())
    assert len(result["runs"]) == 2 * 3 * 2
    for run in result["runs"]:
        assert run["num_train"] == 400 and run["num_test"] == 540  # 30% of 1,797, stratified
        if run["noise_rate"] == 0.0:
            assert run["realised_noise_rate"] == 0.0
            assert run["test_accuracy"] > 0.15  # 10 classes: chance is 0.10
        else:
            assert 0.33 < run["realised_noise_rate"] < 0.47  # binomial(400, 0.4)
    summary = {(r["loss_type"], r["noise_rate"]): r for r in result["summary"]}
    ce_clean = summary[("ce", 0.0)]
    assert ce_clean["n_seeds"] == 2 and len(ce_clean["per_seed"]) == 2
    mean = sum(ce_clean["per_seed"]) / 2
    assert ce_clean["accuracy_mean"] == pytest.approx(mean)
    assert ce_clean["accuracy_std"] == pytest.approx(
        abs(ce_clean["per_seed"][0] - ce_clean["per_seed"][1]) / 2**0.5
    )
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "mean ± std" in (out / "results.md").read_text()
    # calibration before and after temperature scaling, per run and over seeds
    for run in result["runs"]:
        for stage in ("before", "after"):
            assert 0.0 <= run[f"ece_{stage}"] <= 1.0 and 0.0 <= run[f"brier_{stage}"] <= 2.0
            assert run[f"nll_{stage}"] > 0.0
        assert len(run["temperature_folds"]) == 2 and all(t > 0 for t in run["temperature_folds"])
    for stage in ("before", "after"):
        values = [
            r[f"ece_{stage}"] for r in result["runs"] if r["loss_type"] == "ce" and r["noise_rate"] == 0.0
        ]
        assert ce_clean[f"ece_{stage}_mean"] == pytest.approx(sum(values) / 2)
        assert ce_clean[f"ece_{stage}_std"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    assert "ECE before (%)" in proc.stdout and "| square | 40% |" in proc.stdout
    assert "ECE after (%)" in (out / "results.md").read_text()
    assert (out / "calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_rejects_bad_settings(tmp_path):
    exe = shutil.which("hf-squareloss")
    proc = subprocess.run(
        [exe, "demo", "--output-dir", str(tmp_path), "--noise", "1.5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "noise rates must be in [0, 0.9)" in proc.stderr
    proc = subprocess.run([exe, "demo", "--losses", "hinge"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
