"""The comparison grid, the aggregation over seeds and the report, on run folders written here."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from hf_squareloss.cli import build_parser, main
from hf_squareloss.compare.aggregate import collect_runs, summarise
from hf_squareloss.compare.grid import RunSpec, SweepSpec, parse_per_task
from hf_squareloss.compare.report import write_report

SEEDS = (0, 1, 2)
LOSSES = ("ce", "square", "tce")
# accuracy[loss][noise] per seed, chosen so that means, stds and paired differences are all distinct
ACCURACY = {
    "ce": {0.0: [0.80, 0.82, 0.78], 0.4: [0.60, 0.65, 0.58]},
    "square": {0.0: [0.83, 0.81, 0.80], 0.4: [0.66, 0.64, 0.61]},
    "tce": {0.0: [0.79, 0.80, 0.81], 0.4: [0.70, 0.69, 0.66]},
}


def _summary(task: str, protocol: str, loss: str, noise: float, seed: int, accuracy: float) -> dict:
    history = [
        {"epoch": float(e), "step": 10 * e, "eval_accuracy": accuracy - 0.05 / e, "eval_f1": 0.5}
        for e in (1, 2, 3)
    ]
    return {
        "task": task,
        "protocol": {"name": protocol},
        "loss": {"loss_type": loss},
        "loss_description": {
            "ce": "ce (label_smoothing=0)",
            "square": "square (k=1, M=1)",
            "tce": "tce (alpha=1.5)",
        }[loss],
        "label_noise": None
        if noise == 0
        else {"noise_type": "symmetric", "rate": noise, "realised_rate": noise + 0.01},
        "seed": seed,
        "eval_metrics": {"eval_accuracy": accuracy, "eval_f1": accuracy + 0.05, "eval_loss": 0.3},
        "model_epoch": 3.0,
        "best_epoch": 3.0,
        "epochs_trained": 3.0,
        "stopped_early": False,
        "num_train_examples": 100,
        "num_eval_examples": {"validation": 40},
        "train_metrics": {"train_runtime": 1.0},
        "wall_seconds": 2.0,
        "history": history,
    }


@pytest.fixture
def sweep_root(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for loss in LOSSES:
        for noise, values in ACCURACY[loss].items():
            for seed, acc in zip(SEEDS, values, strict=True):
                run = RunSpec("mrpc", "early_stopping", loss, noise, seed)
                folder = root / run.relpath
                folder.mkdir(parents=True)
                (folder / "run_summary.json").write_text(
                    json.dumps(_summary("mrpc", "early_stopping", loss, noise, seed, acc))
                )
    first = root / "mrpc/early_stopping/ce/noise0/seed0"  # the run the report reads the setup from
    training = {
        "num_train_epochs": 3.0,
        "per_device_train_batch_size": 32,
        "gradient_accumulation_steps": 1,
        "learning_rate": 5e-5,
        "lr_scheduler_type": "linear",
        "warmup_steps": 0.1,
        "weight_decay": 0.01,
        "bf16": True,
    }
    run_args = {
        "model": {"model_name_or_path": "/models/tiny"},
        "data": {"data_dir": "/data/MRPC", "max_seq_length": 128},
        "protocol": {"resolved": {"patience": 5, "metric_for_best_model": "accuracy"}},
        "training": training,
    }
    (first / "run_args.json").write_text(json.dumps(run_args))
    counts = {"not_equivalent": 12, "equivalent": 28}
    (first / "dataset.json").write_text(
        json.dumps({"eval_split": "validation", "label_counts": {"validation": counts}})
    )
    # an unfinished run (no run_summary.json) must be ignored
    (root / "mrpc" / "early_stopping" / "ce" / "noise0" / "seed9").mkdir()
    return root


# ---- the grid ------------------------------------------------------------------------------------------------
def test_grid_order_layout_and_commands(tmp_path: Path) -> None:
    spec = SweepSpec(
        model_name_or_path="some/model",
        tasks=["MRPC", "sst-2"],
        losses=["ce", "square"],
        seeds=[0, 1],
        noise_rates=[0.0, 0.4],
        protocols=["early_stopping", "same_epochs"],
        data_root="/data/glue",
        max_train_samples=parse_per_task(["sst2=500", "1000"], "max_train_samples"),
        recipe_args=["--num_train_epochs", "3", "--logging_strategy", "steps"],
        early_stopping_patience=2,
    )
    runs = spec.runs()
    # per task: 2 losses x 2 noise x 2 seeds early stopping, then square only for same_epochs
    assert len(runs) == 2 * (8 + 4)
    assert [r.task for r in runs[:12]] == ["mrpc"] * 12
    assert all(r.protocol == "early_stopping" for r in runs[:8]) and all(
        r.protocol == "same_epochs" for r in runs[8:12]
    )
    assert runs[0] == RunSpec("mrpc", "early_stopping", "ce", 0.0, 0)
    assert runs[1] == RunSpec("mrpc", "early_stopping", "square", 0.0, 0)
    same = runs[8]
    assert same.relpath == Path("mrpc/same_epochs/square/noise0/seed0")
    assert same.reference() == RunSpec("mrpc", "early_stopping", "ce", 0.0, 0)
    argv = spec.recipe_argv(RunSpec("sst2", "same_epochs", "square", 0.4, 1), tmp_path)
    pairs = dict(zip(argv[::1], argv[1::1], strict=False))
    assert pairs["--task_name"] == "sst2" and pairs["--max_train_samples"] == "500"
    assert pairs["--data_dir"] == "/data/glue/SST-2"
    assert pairs["--output_dir"] == str(tmp_path / "sst2/same_epochs/square/noise0.4/seed1")
    assert pairs["--reference_run"] == str(tmp_path / "sst2/early_stopping/ce/noise0.4/seed1")
    assert pairs["--seed"] == "1" and pairs["--noise_seed"] == "1" and pairs["--label_noise"] == "0.4"
    assert argv[-4:] == [
        "--num_train_epochs",
        "3",
        "--logging_strategy",
        "steps",
    ]  # the user's last: they win
    mrpc = spec.recipe_argv(runs[0], tmp_path)
    assert mrpc[mrpc.index("--max_train_samples") + 1] == "1000"
    # the patience goes to the early_stopping runs only: the recipe refuses it with same_epochs
    assert mrpc[mrpc.index("--early_stopping_patience") + 1] == "2"
    assert "--early_stopping_patience" not in argv


def test_compare_checks_every_protocols_arguments_before_running(tmp_path: Path, capsys) -> None:
    from hf_squareloss.cli import main as cli_main

    argv = ["compare", "--output_dir", str(tmp_path / "s"), "--model_name_or_path", "m", "--tasks", "mrpc"]
    argv += ["--protocols", "early_stopping", "same_epochs", "--dry_run"]
    assert cli_main([*argv, "--early_stopping_patience", "2"]) == 0
    capsys.readouterr()
    assert cli_main([*argv, "--", "--early_stopping_patience", "2"]) == 2
    assert "--early_stopping_patience is set by the sweep" in capsys.readouterr().err
    assert cli_main([*argv, "--", "--reference_epochs", "sometimes"]) == 2
    assert "the recipe refuses" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"recipe_args": ["--seed", "3"]}, "--seed is set by the sweep"),
        ({"recipe_args": ["--output_dir=x"]}, "--output_dir is set by the sweep"),
        ({"protocols": ["early_stopping", "same_epochs"], "losses": ["square"]}, "include 'ce'"),
        ({"tasks": ["stsb"]}, "regression task"),
        ({"tasks": ["squad"]}, "unknown GLUE task"),
        ({"losses": ["hinge"]}, "unknown loss_type"),
        ({"noise_rates": [1.0]}, r"noise rates must be in \[0, 1\)"),
        ({"seeds": [1, 1]}, "repeated seeds"),
        ({"seeds": []}, "at least one of seeds"),
    ],
)
def test_grid_refuses_bad_settings(changes: dict, message: str) -> None:
    settings = {"model_name_or_path": "m", "tasks": ["mrpc"], **changes}
    with pytest.raises(ValueError, match=message):
        SweepSpec(**settings)


def test_per_task_counts() -> None:
    assert parse_per_task(["SST-2=8000", "500"], "x") == {"sst2": 8000, "*": 500}
    with pytest.raises(ValueError, match="expected N or TASK=N"):
        parse_per_task(["sst2=many"], "x")
    with pytest.raises(ValueError, match="must be >= 1"):
        parse_per_task(["0"], "x")


def test_compare_is_a_subcommand_with_both_spellings() -> None:
    ns = build_parser().parse_args(
        [
            "compare",
            "--output-dir",
            "o",
            "--model_name_or_path",
            "m",
            "--tasks",
            "mrpc",
            "--",
            "--num_train_epochs",
            "2",
        ]
    )
    assert ns.output_dir == "o" and ns.recipe_args == ["--num_train_epochs", "2"]
    assert (
        ns.losses == ["ce", "square", "tce", "softmax_mse"]
        and ns.noise == [0.0, 0.4]
        and ns.seeds == [0, 1, 2]
    )


# ---- aggregation ---------------------------------------------------------------------------------------------
def test_rows_and_statistics_over_seeds(sweep_root: Path) -> None:
    rows = collect_runs(sweep_root)
    assert len(rows) == 18
    summary = summarise(rows)
    assert len(summary) == 6
    for cell in summary:
        values = np.array(ACCURACY[cell["loss_type"]][cell["noise_rate"]])
        entry = cell["metrics"]["accuracy"]
        assert entry["n"] == 3 and cell["seeds"] == [0, 1, 2]
        assert entry["mean"] == pytest.approx(values.mean())
        assert entry["std"] == pytest.approx(values.std(ddof=1))
        assert entry["per_seed"] == dict(zip(SEEDS, values.tolist(), strict=True))
        if cell["loss_type"] == "ce":
            assert "delta_vs_ce" not in entry
            continue
        ce = np.array(ACCURACY["ce"][cell["noise_rate"]])
        assert entry["delta_vs_ce"] == pytest.approx(values.mean() - ce.mean())
        assert entry["paired_delta"]["mean"] == pytest.approx((values - ce).mean())
        assert entry["paired_delta"]["std"] == pytest.approx((values - ce).std(ddof=1))
        assert entry["wins_vs_ce"] == int((values > ce).sum())
        assert cell["realised_noise_rate"] == pytest.approx(
            cell["noise_rate"] + (0.01 if cell["noise_rate"] else 0)
        )


def test_report_files(sweep_root: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    written = write_report(sweep_root, report, title="Test sweep")
    names = {p.name for p in written}
    assert {"results.csv", "summary.csv", "results.json", "RESULTS.md"} <= names
    assert {"accuracy_vs_noise.png", "learning_curves.png", "seed_spread.png"} <= names
    for png in ("accuracy_vs_noise.png", "learning_curves.png", "seed_spread.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(report / "results.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 18 and {r["seed"] for r in rows} == {"0", "1", "2"}
    first = next(
        r for r in rows if r["loss_type"] == "square" and r["noise_rate"] == "0.4" and r["seed"] == "2"
    )
    assert float(first["accuracy"]) == pytest.approx(0.61) and float(first["f1"]) == pytest.approx(0.66)
    assert len(list((report / "runs").rglob("seed*.json"))) == 18

    md = (report / "RESULTS.md").read_text(encoding="utf-8")
    assert md.startswith("# Test sweep")
    square = np.array(ACCURACY["square"][0.4])
    ce = np.array(ACCURACY["ce"][0.4])
    mean, std = 100 * square.mean(), 100 * square.std(ddof=1)
    delta = 100 * (square.mean() - ce.mean())
    paired_std = 100 * (square - ce).std(ddof=1)
    line = next(
        x for x in md.splitlines() if x.startswith("| square (k=1, M=1) |") and f"{mean:.2f} ± {std:.2f}" in x
    )
    wins = int((square > ce).sum())
    assert f"{delta:+.2f} (paired ± {paired_std:.2f}; better in {wins}/3)" in line
    assert "at most 3 epochs, early-stopping patience 5 on validation accuracy" in md
    assert "bf16 mixed precision. Majority class of validation: equivalent, 70.00%." in md  # 28 / 40
    # Hui & Belkin's BERT numbers beside ours
    assert "| mrpc | accuracy | 83.8 | 82.1 | +1.7 |" in md
    assert "| mrpc | f1 | 88.1 | 86.7 | +1.4 |" in md
    results = json.loads((report / "results.json").read_text())
    assert len(results["runs"]) == 18 and len(results["summary"]) == 6


def test_report_on_an_empty_sweep(tmp_path: Path) -> None:
    written = write_report(tmp_path, tmp_path / "r")
    assert (tmp_path / "r" / "RESULTS.md").read_text().count("0 finished runs") == 1
    assert not [p for p in written if p.suffix == ".png"]


# ---- a sweep folder keeps one set of settings -----------------------------------------------------------------
def test_sweep_folder_refuses_other_settings(tmp_path: Path) -> None:
    import io
    import sys

    from hf_squareloss.compare.runner import run_sweep

    root = tmp_path / "sweep"
    spec = SweepSpec(model_name_or_path="m", tasks=["mrpc"], losses=["ce"], seeds=[0], noise_rates=[0.0])
    # a launcher that starts nothing: the run "fails" (no run_summary.json) but its command is recorded
    outcome = run_sweep(spec, root, launcher=f"{sys.executable} -c pass", out=io.StringIO())
    assert outcome.failed == ["mrpc early_stopping ce noise=0 seed=0"] and not outcome.ok
    stored = json.loads((root / "mrpc/early_stopping/ce/noise0/seed0/sweep_run.json").read_text())
    assert stored["argv"] == spec.recipe_argv(spec.runs()[0], root.resolve())

    other = SweepSpec(
        model_name_or_path="m",
        tasks=["mrpc"],
        losses=["ce"],
        seeds=[0],
        noise_rates=[0.0],
        recipe_args=["--learning_rate", "1"],
    )
    with pytest.raises(
        ValueError, match=r"other shared settings \(recipe_args: \[\] -> \['--learning_rate', '1'\]\)"
    ):
        run_sweep(other, root, out=io.StringIO())

    stored["argv"][stored["argv"].index("--label_noise_type") + 1] = "pair"
    (root / "mrpc/early_stopping/ce/noise0/seed0/sweep_run.json").write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="was started with other settings"):
        run_sweep(spec, root, out=io.StringIO())

    grown = SweepSpec(
        model_name_or_path="m", tasks=["mrpc"], losses=["ce", "tce"], seeds=[0, 1], noise_rates=[0.0]
    )
    stored["argv"][stored["argv"].index("--label_noise_type") + 1] = "symmetric"
    (root / "mrpc/early_stopping/ce/noise0/seed0/sweep_run.json").write_text(json.dumps(stored))
    outcome = run_sweep(
        grown, root, launcher=f"{sys.executable} -c pass", out=io.StringIO()
    )  # the grid may grow
    assert len(outcome.failed) == 4


def test_report_says_when_the_noise_makes_a_wrong_label_the_likelier_one(tmp_path: Path) -> None:
    """Binary task: symmetric noise 0.8 leaves the true label the less likely one, 0.4 does not. Old records without
    the answer get it computed from their rate, type and number of classes."""
    root = tmp_path / "sweep"
    for noise in (0.4, 0.8):
        for loss in ("ce", "square"):
            for seed in (0, 1):
                summary = _summary("sst2", "early_stopping", loss, noise, seed, 0.3 if noise == 0.8 else 0.7)
                summary["label_noise"]["num_classes"] = 2
                if seed == 0:
                    summary["label_noise"]["true_label_most_likely"] = noise < 0.5
                folder = root / RunSpec("sst2", "early_stopping", loss, noise, seed).relpath
                folder.mkdir(parents=True)
                (folder / "run_summary.json").write_text(json.dumps(summary))
    rows = collect_runs(root)
    assert {(r["noise_rate"], r["true_label_most_likely"]) for r in rows} == {(0.4, True), (0.8, False)}
    write_report(root, tmp_path / "report")
    md = (tmp_path / "report" / "RESULTS.md").read_text()
    notes = [line for line in md.splitlines() if "a wrong label is more likely than the true one" in line]
    assert len(notes) == 1 and notes[0].startswith("At noise 0.8 (symmetric, 2 classes)")


def _spec_file(root: Path, **changes) -> None:
    spec = {
        "model_name_or_path": "/models/tiny",
        "early_stopping_patience": None,
        "noise_type": "symmetric",
        "data_root": "/data",
        "max_train_samples": {},
        "max_eval_samples": {},
        "recipe_args": ["--num_train_epochs", "3"],
        **changes,
    }
    (root / "sweep.json").write_text(json.dumps({"spec": spec}))


def test_a_grid_split_over_sweep_folders_is_reported_as_one(sweep_root: Path, tmp_path: Path, capsys) -> None:
    """Seeds 0-2 in one folder, seed 3 in another: one report over 4 seeds, listing both folders' commands."""
    other = tmp_path / "seed3"
    for loss in LOSSES:
        folder = other / RunSpec("mrpc", "early_stopping", loss, 0.0, 3).relpath
        folder.mkdir(parents=True)
        accuracy = {"ce": 0.70, "square": 0.74, "tce": 0.72}[loss]
        (folder / "run_summary.json").write_text(
            json.dumps(_summary("mrpc", "early_stopping", loss, 0.0, 3, accuracy))
        )
    _spec_file(sweep_root)
    _spec_file(other)
    status = {
        "command": "hf-squareloss compare --seeds 3",
        "sessions": [
            {
                "started_at": "t0",
                "ended_at": "t1",
                "seconds": 60.0,
                "command": "hf-squareloss compare --seeds 3",
            }
        ],
    }
    (other / "sweep_status.json").write_text(json.dumps(status))
    report = tmp_path / "report"
    write_report(sweep_root, report, include=[other])
    summary = json.loads((report / "results.json").read_text())
    ce_clean = next(c for c in summary["summary"] if c["loss_type"] == "ce" and c["noise_rate"] == 0.0)[
        "metrics"
    ]["accuracy"]
    expected = [*ACCURACY["ce"][0.0], 0.70]  # computed here from what was written
    assert ce_clean["per_seed"] == {
        str(s): v for s, v in zip((*SEEDS, 3), expected, strict=True)
    }  # JSON keys
    assert ce_clean["mean"] == pytest.approx(float(np.mean(expected)))
    assert summary["sweep"]["included"][0]["root"] == str(other.resolve())
    assert {r["root"] for r in summary["runs"] if r["seed"] == 3} == {
        str(other.resolve())
    }  # where each run is
    md = (report / "RESULTS.md").read_text()
    assert "from 2 sweep folders with the same settings" in md and "hf-squareloss compare --seeds 3" in md
    assert (report / "runs/mrpc/early_stopping/ce/noise0/seed3.json").is_file()

    with pytest.raises(ValueError, match="same run is in two sweep folders"):
        write_report(sweep_root, tmp_path / "r2", include=[other, _copy_of(other, tmp_path / "again")])
    _spec_file(other, recipe_args=["--num_train_epochs", "5"])
    with pytest.raises(ValueError, match="other shared settings"):
        write_report(sweep_root, tmp_path / "r3", include=[other])
    args = ["compare", "--output_dir", str(sweep_root), "--model_name_or_path", "m", "--tasks", "mrpc"]
    assert main([*args, "--aggregate_only", "--include_sweeps", str(tmp_path / "nowhere")]) == 2
    assert "is not another sweep folder" in capsys.readouterr().err


def _copy_of(folder: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(folder, target)
    return target
