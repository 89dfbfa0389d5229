"""The convergence rule (``hf_squareloss.runs.convergence``) on hand-made curves, on a committed run of the image
evidence, and its marks in a report; the real runs that record it are in ``test_compare_vision.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hf_squareloss.runs.convergence import DEFAULT_TOLERANCE, judge, judge_summary

ROOT = Path(__file__).resolve().parents[1]


def _history(values, key="eval_accuracy"):
    return [{"epoch": float(i + 1), key: v} for i, v in enumerate(values)]


def test_a_plateau_has_converged_and_a_climb_has_not():
    # 8 epochs: the last quarter is epochs 7 and 8 (after epoch 6)
    plateau = judge(_history([0.5, 0.7, 0.8, 0.9, 0.93, 0.95, 0.952, 0.954]), "accuracy")
    assert plateau.converged is True and plateau.last_quarter_after_epoch == 6.0
    assert plateau.best_before == 0.95 and plateau.best_in_last_quarter == 0.954
    assert plateau.gain_in_last_quarter == pytest.approx(0.004)
    climbing = judge(_history([0.5, 0.7, 0.8, 0.9, 0.93, 0.95, 0.96, 0.97]), "eval_accuracy")
    assert climbing.converged is False and climbing.gain_in_last_quarter == pytest.approx(0.02)
    assert "still improving" in climbing.reason
    best_early = judge(
        _history([0.9, 0.95, 0.9, 0.8, 0.7, 0.6, 0.6, 0.6]), "accuracy"
    )  # overfits noise: done
    assert best_early.converged is True and best_early.gain_in_last_quarter == pytest.approx(-0.35)


def test_the_tolerance_and_the_direction():
    values = [3.0, 2.0, 1.5, 1.4]  # a loss: lower is better; last quarter (epoch 4) gains 0.1
    assert judge(_history(values, "eval_loss"), "loss", greater_is_better=False).converged is False
    assert (
        judge(_history(values, "eval_loss"), "loss", greater_is_better=False, tolerance=0.11).converged
        is True
    )
    with pytest.raises(ValueError, match="tolerance"):
        judge(_history(values), "accuracy", tolerance=-1)


def test_early_stopping_is_converged_and_short_curves_are_undecided():
    assert judge(_history([0.5, 0.6]), "accuracy", stopped_early=True).converged is True
    assert judge(_history([0.5]), "accuracy").converged is None
    assert judge([], "accuracy").converged is None
    # the epochs trained decide the boundary: 2 evaluations of a 12-epoch run are both before epoch 9
    assert judge(_history([0.5, 0.6]), "accuracy", epochs=12).converged is None


def test_the_committed_six_epoch_image_evidence_was_still_improving():
    """The 6-epoch digits runs of the earlier evidence: square, noise 0, seed 0. Epochs 5 and 6 are the last quarter
    (after epoch 4.5); written out here from its history, independently of the rule's code."""
    path = ROOT / "recipes/vision/results/digits/runs/vision-digits/tce_paper/square/noise0/seed0.json"
    if not path.is_file():
        pytest.skip("the 6-epoch evidence is no longer committed")
    summary = json.loads(path.read_text())
    accuracy = {h["epoch"]: h["eval_accuracy"] for h in summary["history"]}
    before = max(accuracy[e] for e in (1.0, 2.0, 3.0, 4.0))
    last = max(accuracy[5.0], accuracy[6.0])
    verdict = judge_summary(summary)
    assert verdict.converged is (last - before <= DEFAULT_TOLERANCE)
    assert verdict.best_before == before and verdict.best_in_last_quarter == last


def test_a_report_marks_the_cells_still_improving(tmp_path):
    from hf_squareloss.compare.report import convergence_note, task_tables

    cell = {
        "task": "vision:digits",
        "protocol": "tce_paper",
        "loss_type": "square",
        "loss": "square (k=1, M=1)",
        "noise_rate": 0.0,
        "n_seeds": 3,
        "not_converged": 2,
        "undecided": 0,
        "metrics": {
            name: {"mean": 0.9, "std": 0.01, "n": 3, "per_seed": {0: 0.9, 1: 0.89, 2: 0.91}}
            for name in ("test_accuracy", "accuracy")
        },
    }
    text = "\n".join(task_tables([cell], "vision:digits", "tce_paper"))
    assert "90.00 ± 1.00 †(2/3)" in text
    assert "**This comparison is not converged**: 2 of 3 runs had not finished learning" in text
    done = {**cell, "not_converged": 0}
    assert convergence_note([done])[0].startswith(
        "Every run converged (early-stopped runs count as converged"
    )


def test_the_convergence_command_reads_recipe_and_asr_runs(tmp_path, capsys):
    from hf_squareloss.cli import main

    protocol = {"name": "tce_paper", "metric_for_best_model": "accuracy", "greater_is_better": True}
    flat = {"protocol": protocol, "epochs_trained": 4.0, "history": _history([0.5, 0.8, 0.9, 0.9])}
    rising = {"protocol": protocol, "epochs_trained": 4.0, "history": _history([0.5, 0.6, 0.7, 0.8])}
    asr = {"kind": "asr_run", "epochs": 8, "history": [  # WER in percent, lower is better, every 4th epoch
        {"epoch": 4.0, "eval_loss": 2.0, "eval_wer": 60.0}, {"epoch": 8.0, "eval_loss": 1.0, "eval_wer": 40.0}]}  # fmt: skip
    for name, record in (("flat", flat), ("rising", rising)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run_summary.json").write_text(json.dumps(record))
    (tmp_path / "asr").mkdir()
    (tmp_path / "asr" / "results.json").write_text(json.dumps(asr))
    (tmp_path / "other.json").write_text(json.dumps({"not": "a run"}))
    assert main(["convergence", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    verdicts = {(line[:16].strip(), Path(line[17:].split(":")[0]).parent.name) for line in out[:-1]}
    expected = {("converged", "flat"), ("STILL IMPROVING", "rising"), ("STILL IMPROVING", "asr")}
    assert verdicts == expected  # the ASR run gained 20 points of WER in its last quarter
    assert out[-1].startswith("3 runs: 1 converged, 2 still improving, 0 undecided")
    assert main(["convergence", str(tmp_path / "flat")]) == 0
    assert main(["convergence", str(tmp_path / "nowhere")]) == 2
