"""Calibration in the comparison report: per-run columns, statistics over seeds, the table, the CSVs and the plot."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

from hf_squareloss.compare.aggregate import calibration_values, collect_runs, summarise
from hf_squareloss.compare.grid import RunSpec
from hf_squareloss.compare.report import write_report

# (loss, noise) -> per seed (ece before, ece after, nll before, nll after, temperature); tce ran without --calibrate
VALUES = {
    ("ce", 0.0): [(0.08, 0.02, 0.50, 0.41, 1.7), (0.10, 0.03, 0.55, 0.43, 1.9)],
    ("square", 0.0): [(0.30, 0.04, 0.90, 0.40, 0.09), (0.28, 0.05, 0.88, 0.42, 0.08)],
    ("ce", 0.4): [(0.25, 0.05, 1.10, 0.70, 3.1), (0.21, 0.04, 1.00, 0.69, 2.8)],
    ("tce", 0.0): [(0.12, None, 0.60, None, None), (0.14, None, 0.62, None, None)],
}


def _summary(loss: str, noise: float, seed: int, values: tuple) -> dict:
    ece_b, ece_a, nll_b, nll_a, t = values
    if t is None:
        evals = {"eval_accuracy": 0.8, "eval_ece": ece_b, "eval_nll": nll_b, "eval_brier": 0.3}
        calibration = None
    else:
        evals = {
            "eval_accuracy": 0.8,
            "eval_ece": ece_a,
            "eval_nll": nll_a,
            "eval_brier": 0.25,
            "eval_ece_uncalibrated": ece_b,
            "eval_nll_uncalibrated": nll_b,
            "eval_brier_uncalibrated": 0.35,
        }
        calibration = {"temperature": t, "status": "fitted", "fitted_on": "validation"}
    return {
        "task": "sst2",
        "protocol": {"name": "early_stopping"},
        "loss": {"loss_type": loss},
        "loss_description": loss,
        "label_noise": None
        if noise == 0
        else {"noise_type": "symmetric", "rate": noise, "realised_rate": noise},
        "seed": seed,
        "eval_metrics": evals,
        "calibration": calibration,
        "model_epoch": 2.0,
        "epochs_trained": 2.0,
        "num_eval_examples": {"validation": 100},
        "history": [],
    }


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for (loss, noise), per_seed in VALUES.items():
        for seed, values in enumerate(per_seed):
            folder = root / RunSpec("sst2", "early_stopping", loss, noise, seed).relpath
            folder.mkdir(parents=True)
            (folder / "run_summary.json").write_text(json.dumps(_summary(loss, noise, seed, values)))
    return root


def test_calibration_columns_and_statistics(sweep: Path) -> None:
    rows = collect_runs(sweep)
    by_key = {(r["loss_type"], r["noise_rate"], r["seed"]): r for r in rows}
    assert (
        by_key[("square", 0.0, 1)]["ece_before"] == 0.28 and by_key[("square", 0.0, 1)]["ece_after"] == 0.05
    )
    assert by_key[("tce", 0.0, 0)]["ece_before"] == 0.12 and by_key[("tce", 0.0, 0)]["ece_after"] is None
    assert by_key[("ce", 0.4, 0)]["temperature"] == 3.1
    cells = {(c["loss_type"], c["noise_rate"]): c for c in summarise(rows)}
    for (loss, noise), per_seed in VALUES.items():
        cal = cells[(loss, noise)]["calibration"]
        for i, name in enumerate(("ece_before", "ece_after", "nll_before", "nll_after", "temperature")):
            values = [v[i] for v in per_seed if v[i] is not None]
            assert cal[name]["n"] == len(values)
            if values:
                assert cal[name]["mean"] == pytest.approx(sum(values) / len(values))
                assert cal[name]["std"] == pytest.approx(statistics.stdev(values))
    assert calibration_values({"eval_metrics": {}})["ece_before"] is None


def test_calibration_in_the_report(sweep: Path, tmp_path: Path) -> None:
    written = write_report(sweep, tmp_path / "report")
    names = {p.name for p in written}
    assert "calibration.png" in names
    assert (tmp_path / "report" / "calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "report" / "RESULTS.md").read_text()
    assert "## Calibration" in md
    line = next(s for s in md.splitlines() if s.startswith("| sst2 | early_stopping | 0 | square |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[4] == "29.00 ± 1.41"  # ECE before, %: mean 0.29, std 0.0141
    assert cells[5] == "4.50 ± 0.71"
    assert cells[10] == "0.0850 ± 0.0071"
    tce = next(s for s in md.splitlines() if s.startswith("| sst2 | early_stopping | 0 | tce |"))
    assert tce.split("|")[6].strip() == "–"  # no calibration run: no after figure
    with open(tmp_path / "report" / "results.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {"ece_before", "ece_after", "nll_before", "nll_after", "temperature"} <= set(rows[0])
    with open(tmp_path / "report" / "summary.csv", encoding="utf-8") as fh:
        summary = list(csv.DictReader(fh))
    after = [
        r
        for r in summary
        if r["metric"] == "ece_after" and r["loss_type"] == "ce" and r["noise_rate"] == "0.4"
    ]
    assert len(after) == 1 and float(after[0]["mean"]) == pytest.approx(0.045)
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert any(c["calibration"]["nll_after"]["mean"] is not None for c in results["summary"])


def test_the_test_split_has_its_own_calibration_table(tmp_path: Path) -> None:
    """Runs that scored a test split (the image recipe with ``--do_predict``) report its calibration too: held out,
    since the temperature was fitted on validation; an uncalibrated run has *before* figures only."""
    root = tmp_path / "sweep"
    # (loss, seed) -> (test ece before, test ece after, test nll before, test nll after, temperature)
    per_run = {("ce", 0): (0.06, 0.03, 0.30, 0.25, 1.5), ("ce", 1): (0.08, 0.02, 0.34, 0.26, 1.7)}
    per_run |= {("tce", 0): (0.11, None, 0.52, None, None), ("tce", 1): (0.13, None, 0.50, None, None)}
    for (loss, seed), (ece_b, ece_a, nll_b, nll_a, t) in per_run.items():
        summary = _summary(loss, 0.0, seed, (0.1, 0.05 if t else None, 0.4, 0.3 if t else None, t))
        summary |= {"task": "vision:digits", "protocol": {"name": "tce_paper"}}
        summary["eval_metrics"]["eval_accuracy"] = 0.9
        if t is None:
            summary["test_metrics"] = {
                "test_accuracy": 0.9,
                "test_ece": ece_b,
                "test_nll": nll_b,
                "test_brier": 0.2,
            }
        else:
            summary["test_metrics"] = {
                "test_accuracy": 0.9,
                "test_ece": ece_a,
                "test_nll": nll_a,
                "test_brier": 0.15,
                "test_ece_uncalibrated": ece_b,
                "test_nll_uncalibrated": nll_b,
                "test_brier_uncalibrated": 0.18,
            }
        folder = root / RunSpec("vision:digits", "tce_paper", loss, 0.0, seed).relpath
        folder.mkdir(parents=True)
        (folder / "run_summary.json").write_text(json.dumps(summary))
    rows = {(r["loss_type"], r["seed"]): r for r in collect_runs(root)}
    assert rows[("ce", 1)]["test_ece_before"] == 0.08 and rows[("ce", 1)]["test_ece_after"] == 0.02
    assert rows[("ce", 1)]["test_brier_before"] == 0.18 and rows[("ce", 1)]["test_brier_after"] == 0.15
    assert rows[("tce", 0)]["test_nll_before"] == 0.52 and rows[("tce", 0)]["test_nll_after"] is None
    cells = {c["loss_type"]: c["calibration"] for c in summarise(list(rows.values()))}
    assert cells["ce"]["test_ece_after"]["mean"] == pytest.approx(0.025)
    assert cells["ce"]["test_ece_after"]["std"] == pytest.approx(statistics.stdev([0.03, 0.02]))
    assert cells["tce"]["test_ece_after"]["n"] == 0
    write_report(root, tmp_path / "report")
    md = (tmp_path / "report" / "RESULTS.md").read_text()
    validation, test = md.split("on the **test split**")
    row = next(s for s in test.splitlines() if s.startswith("| vision:digits | tce_paper | 0 | ce |"))
    cells_of_row = [c.strip() for c in row.strip("|").split("|")]
    assert cells_of_row[4:8] == ["7.00 ± 1.41", "2.50 ± 0.71", "0.320 ± 0.028", "0.255 ± 0.007"]
    assert cells_of_row[10] == "1.6000 ± 0.1414"
    row = next(s for s in validation.splitlines() if s.startswith("| vision:digits | tce_paper | 0 | ce |"))
    assert [c.strip() for c in row.strip("|").split("|")][4] == "10.00 ± 0.00"  # the validation figures


def test_no_test_table_without_test_metrics(sweep: Path, tmp_path: Path) -> None:
    write_report(sweep, tmp_path / "report")
    assert "test split**" not in (tmp_path / "report" / "RESULTS.md").read_text()
    assert all(r["test_ece_before"] is None for r in collect_runs(sweep))


def test_a_temperature_that_was_not_fitted_is_marked(sweep: Path, tmp_path: Path) -> None:
    """A run whose validation NLL had no interior minimum (here ``inverted``: T is the range's upper end) is counted
    in its cell, and its T is marked in the report's calibration table, with the note under it."""
    path = sweep / RunSpec("sst2", "early_stopping", "ce", 0.4, 1).relpath / "run_summary.json"
    summary = json.loads(path.read_text())
    summary["calibration"] |= {"status": "inverted", "temperature": 1000.0}
    path.write_text(json.dumps(summary))
    rows = {(r["loss_type"], r["noise_rate"], r["seed"]): r for r in collect_runs(sweep)}
    assert rows[("ce", 0.4, 1)]["temperature_status"] == "inverted"
    assert rows[("ce", 0.4, 0)]["temperature_status"] == "fitted"
    assert rows[("tce", 0.0, 0)]["temperature_status"] is None  # not calibrated
    cells = {(c["loss_type"], c["noise_rate"]): c for c in summarise(list(rows.values()))}
    assert [cells[k]["temperature_not_fitted"] for k in sorted(cells)] == [0, 1, 0, 0]
    write_report(sweep, tmp_path / "report")
    md = (tmp_path / "report" / "RESULTS.md").read_text()
    line = next(s for s in md.splitlines() if s.startswith("| sst2 | early_stopping | 0.4 | ce |"))
    assert line.split("|")[11].strip() == "501.5500 ± 704.9148 ‡(1/2)"  # mean and sample std of 3.1 and 1000
    others = [s for s in md.splitlines() if s.startswith("| sst2 | early_stopping | 0 |")]
    assert others and not any("‡" in s for s in others)
    assert "‡(k/n): in k of the cell's n runs (1 in all)" in md
    with open(tmp_path / "report" / "results.csv", encoding="utf-8") as fh:
        statuses = {
            (r["loss_type"], r["noise_rate"], r["seed"]): r["temperature_status"] for r in csv.DictReader(fh)
        }
    assert statuses[("ce", "0.4", "1")] == "inverted" and statuses[("tce", "0.0", "0")] == ""


def test_no_mark_when_every_temperature_was_fitted(sweep: Path, tmp_path: Path) -> None:
    write_report(sweep, tmp_path / "report")
    assert "‡" not in (tmp_path / "report" / "RESULTS.md").read_text()
