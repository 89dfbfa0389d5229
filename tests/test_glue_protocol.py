"""The papers' protocols in the recipe: early stopping with the best model kept, and same_epochs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_glue_recipe import build_tiny_model, recipe_argv

from hf_squareloss.glue.run import main
from hf_squareloss.runs.arguments import ProtocolArguments
from hf_squareloss.runs.folder import last_complete_checkpoint


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, shared_model) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"), shared_model("paraphrase-MiniLM-L3-v2"))


def _learning_rates(run_dir: Path) -> dict[float, float]:
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return {e["epoch"]: e["learning_rate"] for e in state["log_history"] if "learning_rate" in e}


@pytest.fixture(scope="module")
def reference_runs(tiny_model, shared_data, tmp_path_factory) -> dict[str, Path]:
    """Cross-entropy runs with early stopping that stops: learning rate 0, so the validation metric never moves,
    the best epoch is the first and patience 2 ends training after epoch 3 of 10."""
    root = tmp_path_factory.mktemp("protocol")
    data = shared_data("glue/MRPC")
    runs = {}
    for name, noise in (("clean", "0"), ("noisy", "0.3")):
        out = root / f"ce-{name}"
        main(
            recipe_argv(
                tiny_model,
                "mrpc",
                data,
                out,
                "--loss_type",
                "ce",
                "--num_train_epochs",
                "10",
                "--learning_rate",
                "0",
                "--early_stopping_patience",
                "2",
                "--label_noise",
                noise,
            )
        )
        runs[name] = out
    return runs


def test_early_stopping_stops_after_patience_and_keeps_the_best(reference_runs) -> None:
    summary = json.loads((reference_runs["clean"] / "run_summary.json").read_text())
    assert summary["protocol"]["name"] == "early_stopping" and summary["protocol"]["patience"] == 2
    assert [h["epoch"] for h in summary["history"]] == [1.0, 2.0, 3.0]
    assert summary["epochs_trained"] == 3.0 and summary["num_train_epochs"] == 10.0
    assert summary["stopped_early"] is True
    assert summary["best_epoch"] == 1.0 and summary["model_epoch"] == 1.0


def test_best_model_is_the_one_evaluated(tiny_model, shared_data, tmp_path) -> None:
    out = tmp_path / "run"
    summary = main(
        recipe_argv(
            tiny_model,
            "mrpc",
            shared_data("glue/MRPC"),
            out,
            "--num_train_epochs",
            "4",
            "--learning_rate",
            "5e-3",
        )
    )
    history = summary["history"]
    best = max(history, key=lambda h: h["eval_accuracy"])  # first of the maxima, as the Trainer keeps it
    assert summary["model_epoch"] == best["epoch"]
    assert summary["eval_metrics"]["eval_accuracy"] == pytest.approx(best["eval_accuracy"])
    assert summary["eval_metrics"]["eval_loss"] == pytest.approx(best["eval_loss"])


@pytest.mark.parametrize(("reference_epochs", "expected"), [("best", 1.0), ("trained", 3.0)])
def test_same_epochs_trains_for_the_reference_epochs(
    reference_runs,
    tiny_model,
    shared_data,
    tmp_path,
    reference_epochs: str,
    expected: float,
) -> None:
    out = tmp_path / "square"
    summary = main(
        recipe_argv(
            tiny_model,
            "mrpc",
            shared_data("glue/MRPC"),
            out,
            "--loss_type",
            "square",
            "--protocol",
            "same_epochs",
            "--reference_run",
            str(reference_runs["clean"]),
            "--reference_epochs",
            reference_epochs,
            "--learning_rate",
            "1e-3",
        )
    )
    assert summary["epochs_trained"] == expected
    assert [h["epoch"] for h in summary["history"]] == [float(e) for e in range(1, int(expected) + 1)]
    assert summary["num_train_epochs"] == 10.0  # the reference's schedule horizon
    protocol = summary["protocol"]
    assert protocol["stop_epoch"] == expected and protocol["reference_loss_type"] == "ce"
    assert protocol["reference_run"] == str(reference_runs["clean"].resolve())
    assert summary["model_epoch"] == expected  # the last model, not the best
    # the schedule of a 10-epoch run: 48 examples / batch 16 = 3 steps per epoch, 30 in all; linear decay without
    # warm-up logs, at the end of epoch 1, the rate of its last step (index 2): 1e-3 * (30 - 2) / 30. With the
    # horizon of the epochs actually run it would be 1e-3 * (3 * expected - 2) / (3 * expected).
    assert _learning_rates(out)[1.0] == pytest.approx(1e-3 * 28 / 30)


def test_same_epochs_refuses_inconsistent_references(
    reference_runs, tiny_model, shared_data, tmp_path
) -> None:
    def run(task: str, folder: str, reference: Path, *extra: str) -> None:
        main(
            recipe_argv(
                tiny_model,
                task,
                shared_data(f"glue/{folder}"),
                tmp_path / "out",
                "--protocol",
                "same_epochs",
                "--reference_run",
                str(reference),
                *extra,
            )
        )

    with pytest.raises(ValueError, match="is a mrpc run; this run is qnli"):
        run("qnli", "QNLI", reference_runs["clean"])
    with pytest.raises(ValueError, match=r"label_noise=0.3, this run asks for 0.0"):
        run("mrpc", "MRPC", reference_runs["noisy"])
    with pytest.raises(ValueError, match=r"max_train_samples=48, this run asks for 40"):
        run("mrpc", "MRPC", reference_runs["clean"], "--max_train_samples", "40")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    with pytest.raises(ValueError, match="not a finished run"):
        run("mrpc", "MRPC", unfinished)
    with pytest.raises(ValueError, match="no such folder"):
        run("mrpc", "MRPC", tmp_path / "missing")
    with pytest.raises(ValueError, match="do not pass --max_steps"):
        run("mrpc", "MRPC", reference_runs["clean"], "--max_steps", "3")


def test_protocol_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="needs --reference_run"):
        ProtocolArguments(protocol="same_epochs")
    with pytest.raises(ValueError, match="only used with --protocol same_epochs"):
        ProtocolArguments(protocol="early_stopping", reference_run="somewhere")
    with pytest.raises(ValueError, match="applies to --protocol early_stopping"):
        ProtocolArguments(protocol="fixed_epochs", early_stopping_patience=3)
    with pytest.raises(ValueError, match="must be >= 1"):
        ProtocolArguments(early_stopping_patience=0)
    with pytest.raises(ValueError, match="--protocol must be one of"):
        ProtocolArguments(protocol="forever")
    assert ProtocolArguments().patience == 5  # the papers' patience by default


def test_same_epochs_needs_training(tiny_model, shared_data, tmp_path) -> None:
    argv = [
        a
        for a in recipe_argv(tiny_model, "mrpc", shared_data("glue/MRPC"), tmp_path / "o")
        if a != "--do_train"
    ]
    with pytest.raises(ValueError, match="same_epochs shapes training; pass --do_train"):
        main([*argv, "--protocol", "same_epochs", "--reference_run", str(tmp_path)])


def test_incomplete_checkpoints_are_not_resumed_from(tmp_path) -> None:
    for step, complete in ((10, True), (20, True), (30, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x")
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(tmp_path, remove_incomplete=False) == tmp_path / "checkpoint-20"
    assert (tmp_path / "checkpoint-30").exists()
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-20"
    assert not (tmp_path / "checkpoint-30").exists()
    assert last_complete_checkpoint(tmp_path / "checkpoint-10") is None
