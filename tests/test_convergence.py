"""The convergence rule (``hf_squareloss.runs.convergence``) on hand-made curves, on the committed image
evidence, and its marks in a report; the real runs that record it are in ``test_compare_vision.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hf_squareloss.runs.convergence import judge, judge_summary

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


# The runs of the committed image evidence that were still improving when training ended (256 epochs): none. A run
# named here would have to be flagged by the report, so a new report cannot add one silently.
STILL_IMPROVING_IN_COMMITTED_EVIDENCE: set[str] = set()


def test_the_committed_image_evidence_is_complete_and_its_flags_are_right():
    """``recipes/vision/results/digits``: every loss of the registry at uniform noise 0, 0.4 and 0.8 with seeds 0-2,
    each run at least 32 epochs with a validation score at every epoch. Each verdict is re-read here from the run's
    own validation curve (written out from the rule's definition, not its code); the run summary, ``results.json``
    and the report's daggers must agree with it, and the runs still improving are exactly the ones named above."""
    from hf_squareloss.registry import loss_types

    folder = ROOT / "recipes/vision/results/digits"
    runs = json.loads((folder / "results.json").read_text())["runs"]
    grid = {(loss, noise, seed) for loss in loss_types() for noise in (0.0, 0.4, 0.8) for seed in (0, 1, 2)}
    assert len(runs) == len(grid) and {(r["loss_type"], r["noise_rate"], r["seed"]) for r in runs} == grid
    still_improving = set()
    for run in runs:
        summary = json.loads((folder / "runs" / f"{run['run_dir']}.json").read_text())
        epochs = summary["epochs_trained"]
        assert epochs >= 32 and not summary["stopped_early"], run["run_dir"]
        curve = {h["epoch"]: h["eval_accuracy"] for h in summary["history"] if "eval_accuracy" in h}
        assert sorted(curve) == [float(e) for e in range(1, int(epochs) + 1)], run["run_dir"]
        before = max(v for e, v in curve.items() if e <= 0.75 * epochs)
        last = max(v for e, v in curve.items() if e > 0.75 * epochs)
        converged = last - before <= 0.005
        verdict = judge_summary(summary)
        assert (verdict.best_before, verdict.best_in_last_quarter) == (before, last), run["run_dir"]
        assert run["converged"] is converged and summary["converged"] is converged, run["run_dir"]
        if not converged:
            still_improving.add(run["run_dir"])
    assert still_improving == STILL_IMPROVING_IN_COMMITTED_EVIDENCE
    report = (folder / "RESULTS.md").read_text()
    assert ("**This comparison is not converged**" in report) is bool(still_improving)
    assert report.count("†(1/3)") == 2 * len(still_improving)  # the test and the validation table


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
