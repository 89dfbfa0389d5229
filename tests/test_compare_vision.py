"""``compare`` with image tasks (``vision:<name>``): the grid's commands, the aggregation of test and validation
accuracy, the report, and a real two-run sweep through the image recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vision_data import write_digit_folders

from hf_squareloss.compare.aggregate import collect_runs, summarise
from hf_squareloss.compare.grid import RunSpec, SweepSpec
from hf_squareloss.compare.report import write_report
from hf_squareloss.vision.run import parse_args as parse_vision_args


def test_vision_runs_and_their_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "digits" / "train").mkdir(parents=True)
    (data / "digits" / "test").mkdir()
    spec = SweepSpec(
        model_name_or_path="resnet20",
        tasks=["vision:digits"],
        losses=["ce", "tce"],
        seeds=[1],
        noise_rates=[0.4],
        noise_type="uniform",
        protocols=["tce_paper"],
        data_root=str(data),
        recipe_args=["--num_train_epochs", "2"],
    )
    run = spec.runs()[1]
    assert run == RunSpec("vision:digits", "tce_paper", "tce", 0.4, 1)
    assert run.relpath == Path("vision-digits/tce_paper/tce/noise0.4/seed1")
    assert run.module == "hf_squareloss.vision.run"
    argv = spec.recipe_argv(run, tmp_path / "sweep")
    pairs = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    assert pairs["--model_type"] == "resnet20" and "--model_name_or_path" not in argv
    assert pairs["--train_dir"] == str(data / "digits" / "train") and pairs["--test_dir"] == str(
        data / "digits" / "test"
    )
    assert "--validation_dir" not in argv and "--do_predict" in argv  # validation: held out of train
    assert pairs["--label_noise_type"] == "uniform" and pairs["--protocol"] == "tce_paper"
    model_args, data_args, noise, protocol, training = parse_vision_args(
        argv
    )  # the recipe accepts the command
    assert (
        data_args.task_name == "vision:digits"
        and protocol.protocol == "tce_paper"
        and noise.label_noise == 0.4
    )
    assert training.num_train_epochs == 2 and model_args.model_type == "resnet20"

    hub = SweepSpec(model_name_or_path="/models/vit", tasks=["vision:cifar10"], protocols=["early_stopping"])
    argv = hub.recipe_argv(hub.runs()[0], tmp_path / "sweep")
    assert argv[:6] == [
        "--model_name_or_path",
        "/models/vit",
        "--task_name",
        "vision:cifar10",
        "--dataset_name",
        "cifar10",
    ]


def test_glue_commands_are_unchanged(tmp_path: Path) -> None:
    spec = SweepSpec(
        model_name_or_path="m", tasks=["mrpc"], losses=["ce"], seeds=[0], noise_rates=[0.0], data_root="/d"
    )
    argv = spec.recipe_argv(spec.runs()[0], Path("/s"))
    assert argv[:10] == [
        "--model_name_or_path", "m", "--task_name", "mrpc", "--output_dir", "/s/mrpc/early_stopping/ce/noise0/seed0",
        "--do_train", "--do_eval", "--loss_type", "ce",
    ]  # fmt: skip
    assert argv[argv.index("--data_dir") + 1] == "/d/MRPC"
    assert spec.runs()[0].module == "hf_squareloss.glue.run"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tasks": ["mrpc"], "protocols": ["tce_paper"]}, "for image tasks"),
        ({"tasks": ["vision:"]}, "vision:<data set"),
        ({"recipe_args": ["--train_dir", "x"]}, "set by the sweep"),
    ],
)
def test_vision_grid_refusals(changes: dict, message: str) -> None:
    settings = {"model_name_or_path": "resnet20", "tasks": ["vision:digits"], **changes}
    with pytest.raises(ValueError, match=message):
        SweepSpec(**settings)


def _summary(loss: str, seed: int, test: float, val: float) -> dict:
    return {
        "task": "vision:digits",
        "protocol": {"name": "tce_paper"},
        "loss": {"loss_type": loss},
        "loss_description": loss,
        "label_noise": {"noise_type": "uniform", "rate": 0.8, "realised_rate": 0.71},
        "seed": seed,
        "eval_metrics": {"eval_accuracy": val},
        "test_metrics": {"test_accuracy": test},
        "model_epoch": 2.0,
        "epochs_trained": 4.0,
        "history": [{"epoch": 1.0, "eval_accuracy": val - 0.1}, {"epoch": 2.0, "eval_accuracy": val}],
        "num_eval_examples": {"validation": 50},
    }


def test_test_and_validation_accuracy_are_aggregated_against_ce_of_the_same_protocol(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    values = {"ce": [(0.50, 0.52), (0.40, 0.44)], "tce": [(0.70, 0.66), (0.65, 0.60)]}
    for loss, per_seed in values.items():
        for seed, (test, val) in enumerate(per_seed):
            folder = root / RunSpec("vision:digits", "tce_paper", loss, 0.8, seed).relpath
            folder.mkdir(parents=True)
            (folder / "run_summary.json").write_text(json.dumps(_summary(loss, seed, test, val)))
    rows = collect_runs(root)
    assert [(r["loss_type"], r["seed"], r["test_accuracy"], r["accuracy"]) for r in rows] == [
        ("ce", 0, 0.50, 0.52), ("ce", 1, 0.40, 0.44), ("tce", 0, 0.70, 0.66), ("tce", 1, 0.65, 0.60),
    ]  # fmt: skip
    tce = next(c for c in summarise(rows) if c["loss_type"] == "tce")
    test = tce["metrics"]["test_accuracy"]
    assert test["mean"] == pytest.approx(0.675) and test["delta_vs_ce"] == pytest.approx(0.675 - 0.45)
    assert test["paired_delta"]["mean"] == pytest.approx((0.20 + 0.25) / 2) and test["wins_vs_ce"] == 2
    written = write_report(root)
    report = (root / "RESULTS.md").read_text()
    assert "vision:digits, tce paper: test accuracy of the model kept on validation (%)" in report
    assert "| tce | 67.50 ± 3.54 | +22.50 (paired ± 3.54; better in 2/2) |" in report
    assert any(p.name == "accuracy_vs_noise.png" for p in written)


@pytest.mark.slow
def test_a_real_vision_sweep(tmp_path: Path) -> None:
    from hf_squareloss.cli import main as cli_main

    write_digit_folders(tmp_path / "data" / "digits", size=8, per_class=(6, 3, 3))
    code = cli_main([
        "compare", "--output_dir", str(tmp_path / "sweep"), "--model_name_or_path", "resnet20", "--tasks",
        "vision:digits", "--data_root", str(tmp_path / "data"), "--losses", "ce", "square", "--seeds", "0",
        "--noise", "0.4", "--noise_type", "uniform", "--protocols", "tce_paper", "--", "--num_train_epochs", "4",
        "--lr_milestones", "2", "3", "--per_device_train_batch_size", "20", "--use_cpu",
    ])  # fmt: skip
    assert code == 0
    rows = collect_runs(tmp_path / "sweep")
    assert [r["loss_type"] for r in rows] == ["ce", "square"]
    assert all(0 <= r["test_accuracy"] <= 1 and r["num_eval_examples"] == 30 for r in rows)
    assert all(r["realised_noise_rate"] > 0 for r in rows)
    report = (tmp_path / "sweep" / "RESULTS.md").read_text()
    assert "vision:digits" in report
    # each run recorded whether it had finished learning: the last quarter (epoch 4 of 4) against epochs 1-3
    for row in rows:
        accuracy = {h["epoch"]: h["eval_accuracy"] for h in row["history"]}
        assert sorted(accuracy) == [1.0, 2.0, 3.0, 4.0]
        expected = accuracy[4.0] - max(accuracy[1.0], accuracy[2.0], accuracy[3.0]) <= 0.005
        assert row["converged"] is expected and row["convergence_source"] == "run"
    still = sum(r["converged"] is False for r in rows)
    if still:
        assert f"{still} of 2 runs had not finished learning" in report
    else:
        assert "Every run converged" in report
