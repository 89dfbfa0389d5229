"""The GLUE recipe end to end: every task x every loss on tiny subsets, its output folder, label noise on the
training split only, interruption and resumption, refusals, and real learning with the MiniLM-L3."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_squareloss.glue import get_task
from hf_squareloss.glue.arguments import DataTrainingArguments
from hf_squareloss.glue.preprocess import prepare_data
from hf_squareloss.glue.run import main
from hf_squareloss.registry import loss_types
from hf_squareloss.runs.arguments import LabelNoiseArguments
from hf_squareloss.runs.folder import RunLockedError, run_lock

TASK_FOLDERS = {"mrpc": "MRPC", "sst2": "SST-2", "qnli": "QNLI", "qqp": "QQP"}


def build_tiny_model(folder: Path, tokenizer_source: Path) -> Path:
    """A 1-layer, 32-wide BERT built from a config, with the real MiniLM tokenizer (fast to train)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, shared_model) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"), shared_model("paraphrase-MiniLM-L3-v2"))


def recipe_argv(model: Path, task: str, data_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path",
        str(model),
        "--task_name",
        task,
        "--data_dir",
        str(data_dir),
        "--output_dir",
        str(output_dir),
        "--do_train",
        "--do_eval",
        "--max_train_samples",
        "48",
        "--max_eval_samples",
        "24",
        "--max_seq_length",
        "32",
        "--per_device_train_batch_size",
        "16",
        "--num_train_epochs",
        "1",
        "--learning_rate",
        "1e-3",
        "--use_cpu",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--logging_strategy",
        "epoch",
        *extra,
    ]


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _dev_labels(folder: Path, task: str, n: int) -> list[int]:
    """The first ``n`` dev labels, read independently with the csv module."""
    spec = get_task(task).tsv
    with open(folder / "dev.tsv", encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    column = rows[0].index(spec.label_field)
    return [spec.label_values[r[column]] for r in rows[1 : n + 1]]


# ---- every task, every loss -------------------------------------------------------------------------------
# every loss on MRPC and every task with the square loss (every task x every loss would be 4 x the losses' runs;
# the losses differ only inside the Trainer, whose tests cover each of them on every head)
TASK_LOSS_PAIRS = sorted(
    {("mrpc", loss) for loss in loss_types()} | {(task, "square") for task in TASK_FOLDERS}
)


@pytest.mark.parametrize("task,loss_type", TASK_LOSS_PAIRS)
def test_each_task_and_loss_end_to_end(tiny_model, shared_data, tmp_path, task: str, loss_type: str) -> None:
    out = tmp_path / "run"
    summary = main(
        recipe_argv(
            tiny_model, task, shared_data(f"glue/{TASK_FOLDERS[task]}"), out, "--loss_type", loss_type
        )
    )
    results = _read(out / "all_results.json")
    assert 0.0 <= results["eval_accuracy"] <= 1.0 and results["eval_samples"] == 24
    assert ("eval_f1" in results) == (task in ("mrpc", "qqp"))
    config = _read(out / "config.json")
    assert config["hf_squareloss"]["loss_type"] == loss_type
    assert list(config["id2label"].values()) == list(get_task(task).label_names)
    assert summary["loss"]["loss_type"] == loss_type and summary["task"] == task
    assert summary["num_train_examples"] == 48


def test_output_folder_holds_what_a_model_card_needs(tiny_model, shared_data, tmp_path) -> None:
    out = tmp_path / "run"
    folder = shared_data("glue/MRPC")
    main(
        recipe_argv(
            tiny_model,
            "mrpc",
            folder,
            out,
            "--loss_type",
            "tce",
            "--tce_alpha",
            "1.5",
            "--label_noise",
            "0.25",
            "--label_noise_exact",
            "true",
            "--noise_seed",
            "3",
            "--hub_token",
            "secret-token",
        )
    )
    for name in (
        "run_args.json",
        "all_results.json",
        "eval_results.json",
        "train_results.json",
        "trainer_state.json",
        "label_noise.json",
        "dataset.json",
        "run_summary.json",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ):
        assert (out / name).is_file(), name
    run_args = _read(out / "run_args.json")
    assert "secret-token" not in (out / "run_args.json").read_text()
    assert not any(k.endswith("_token") for k in run_args["training"])
    assert run_args["data"]["task_name"] == "mrpc" and run_args["training"]["loss_type"] == "tce"
    assert run_args["label_noise"]["noise_seed"] == 3
    dataset = _read(out / "dataset.json")
    assert dataset["dataset"] == "nyu-mll/glue" and dataset["config_name"] == "mrpc"
    assert dataset["origin"] == "tsv" and dataset["eval_split"] == "validation"
    assert dataset["files"]["train"]["path"] == str((folder / "train.tsv").resolve())
    noise = _read(out / "label_noise.json")
    assert noise["num_flipped"] == 12 == len(noise["flipped_indices"])  # exactly round(0.25 * 48)
    assert noise["realised_rate"] == pytest.approx(0.25)
    assert noise["flipped_idx"] == noise["flipped_indices"]  # the subset is the file's first rows
    state = _read(out / "trainer_state.json")
    assert any("eval_accuracy" in entry for entry in state["log_history"])
    assert (
        _read(out / "eval_results.json")["eval_accuracy"] == _read(out / "all_results.json")["eval_accuracy"]
    )
    assert _read(out / "config.json")["hf_squareloss"]["alpha"] == 1.5


def test_eval_metrics_match_the_saved_model(tiny_model, shared_data, tmp_path) -> None:
    """eval_accuracy / eval_f1 equal what the saved model predicts, scored here from the definitions."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = shared_data("glue/MRPC")
    out = tmp_path / "run"
    main(recipe_argv(tiny_model, "mrpc", folder, out, "--loss_type", "square", "--num_train_epochs", "2"))
    with open(folder / "dev.tsv", encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[1:25]
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    batch = tokenizer(
        [r[3] for r in rows],
        [r[4] for r in rows],
        truncation=True,
        max_length=32,
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        preds = model(**batch).logits.argmax(-1).tolist()
    refs = [int(r[0]) for r in rows]
    tp = sum(p == 1 and r == 1 for p, r in zip(preds, refs, strict=True))
    fp = sum(p == 1 and r == 0 for p, r in zip(preds, refs, strict=True))
    fn = sum(p == 0 and r == 1 for p, r in zip(preds, refs, strict=True))
    results = _read(out / "eval_results.json")
    assert results["eval_accuracy"] == pytest.approx(
        sum(p == r for p, r in zip(preds, refs, strict=True)) / 24
    )
    assert results["eval_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn) if tp else 0.0)


# ---- label noise touches the training split only ----------------------------------------------------------
def test_label_noise_only_on_the_training_split(shared_data) -> None:
    folder = shared_data("glue/QNLI")
    task = get_task("qnli")
    data_args = DataTrainingArguments(task_name="qnli", data_dir=str(folder), max_train_samples=1000)
    noise_args = LabelNoiseArguments(label_noise=0.4, noise_seed=7)
    splits, noise, dataset = prepare_data(task, data_args, noise_args)
    clean_train = splits["train"]["clean_label"]
    noisy_train = splits["train"]["label"]
    changed = [i for i, (a, b) in enumerate(zip(clean_train, noisy_train, strict=True)) if a != b]
    assert changed == noise["flipped_indices"]
    assert noise["realised_rate"] == len(changed) / 1000
    assert abs(len(changed) - 400) < 5 * (1000 * 0.4 * 0.6) ** 0.5
    assert splits["validation"]["label"] == _dev_labels(folder, "qnli", 1000)  # untouched
    assert "clean_label" not in splits["validation"].column_names
    assert dataset["label_noise"] is True and dataset["splits_used"] == {"train": 1000, "validation": 1000}
    dev = _dev_labels(folder, "qnli", 1000)
    assert dataset["label_counts"]["validation"] == {
        "entailment": dev.count(0),
        "not_entailment": dev.count(1),
    }
    assert dataset["label_counts"]["train"]["entailment"] == noisy_train.count(0)
    # the noise seed decides; the same seed gives the same flips
    again, noise_again, _ = prepare_data(task, data_args, noise_args)
    assert (
        again["train"]["label"] == noisy_train and noise_again["flipped_indices"] == noise["flipped_indices"]
    )
    other, _, _ = prepare_data(task, data_args, LabelNoiseArguments(label_noise=0.4, noise_seed=8))
    assert other["train"]["label"] != noisy_train


def test_pair_noise_in_the_recipe(shared_data) -> None:
    task = get_task("sst2")
    data_args = DataTrainingArguments(
        task_name="sst2", data_dir=str(shared_data("glue/SST-2")), max_train_samples=500
    )
    splits, noise, _ = prepare_data(
        task, data_args, LabelNoiseArguments(label_noise=0.2, label_noise_type="pair", label_noise_exact=True)
    )
    clean = np.asarray(splits["train"]["clean_label"])
    noisy = np.asarray(splits["train"]["label"])
    assert int((clean != noisy).sum()) == 100
    assert np.array_equal(noisy[noise["flipped_indices"]], (clean[noise["flipped_indices"]] + 1) % 2)


# ---- interruption, resumption, refusals -------------------------------------------------------------------
def test_interrupted_run_resumes_from_its_checkpoint(
    tiny_model, shared_data, tmp_path, interrupt_after_first_checkpoint, capsys
) -> None:
    out = tmp_path / "run"
    argv = recipe_argv(
        tiny_model, "sst2", shared_data("glue/SST-2"), out, "--num_train_epochs", "3", "--loss_type", "square"
    )
    with interrupt_after_first_checkpoint(), pytest.raises(KeyboardInterrupt):
        main(argv)
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-3"]
    assert not (out / "run_summary.json").exists()

    with pytest.raises(
        ValueError, match=r"interrupted run with other settings \(training.loss_type: 'square' -> 'ce'"
    ):
        main([*argv, "--loss_type", "ce"])
    # every loss field of the registry is part of the check, also those of losses added after the recipe
    with pytest.raises(ValueError, match=r"other settings \(training.focal_gamma: None -> 3.0\)"):
        main([*argv, "--focal_gamma", "3"])

    summary = main(argv)
    assert "resuming the interrupted run from" in capsys.readouterr().out
    assert [h["epoch"] for h in summary["history"]] == [1.0, 2.0, 3.0]
    state = _read(out / "trainer_state.json")
    assert state["global_step"] == 9  # 3 epochs x 48/16 steps: the first epoch was not redone

    with pytest.raises(ValueError, match="finished runs are never overwritten"):
        main(argv)


def test_two_processes_never_write_one_run(tiny_model, shared_data, tmp_path) -> None:
    out = tmp_path / "run"
    with run_lock(out), pytest.raises(RunLockedError, match="being written by another process"):
        main(recipe_argv(tiny_model, "mrpc", shared_data("glue/MRPC"), out))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--task_name", "stsb"], "regression task"),
        (["--task_name", "squad"], "unknown GLUE task 'squad'"),
        (["--label_noise", "1.5"], r"--label_noise must be in \[0, 1\)"),
        (["--label_noise", "nan"], "--label_noise must be a number"),
        (["--loss_type", "square", "--square_k", "-1"], "k must be a finite number > 0"),
        (["--max_train_samples", "0"], "--max_train_samples must be >= 1"),
        (["--do_predict"], "GLUE's test labels are not public"),
    ],
)
def test_bad_arguments_are_refused(tiny_model, shared_data, tmp_path, extra: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        main(recipe_argv(tiny_model, "mrpc", shared_data("glue/MRPC"), tmp_path / "run", *extra))
    assert not (tmp_path / "run" / "run_summary.json").exists()


def test_do_eval_only(tiny_model, shared_data, tmp_path) -> None:
    out = tmp_path / "eval-only"
    argv = [a for a in recipe_argv(tiny_model, "qnli", shared_data("glue/QNLI"), out) if a != "--do_train"]
    summary = main(argv)
    assert summary["did_train"] is False and summary["history"] == []
    assert summary["protocol"] == {"name": "evaluation_only"}
    assert 0.0 <= _read(out / "eval_results.json")["eval_accuracy"] <= 1.0
    assert not (out / "train_results.json").exists()


# ---- real learning ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_minilm_learns_sst2_with_the_square_loss(shared_model, shared_data, tmp_path) -> None:
    """The real 3-layer MiniLM trained with the square loss on 320 SST-2 sentences: clearly above the majority
    class on 200 dev sentences."""
    loss_type = "square"
    out = tmp_path / "run"
    argv = recipe_argv(shared_model("paraphrase-MiniLM-L3-v2"), "sst2", shared_data("glue/SST-2"), out)
    argv += [
        "--loss_type",
        loss_type,
        "--max_train_samples",
        "320",
        "--max_eval_samples",
        "200",
        "--num_train_epochs",
        "2",
        "--learning_rate",
        "1e-4",
        "--per_device_train_batch_size",
        "32",
        "--seed",
        "1",
        "--protocol",
        "fixed_epochs",  # no per-epoch checkpoints: faster
    ]  # float32: bf16 autocast is emulated, and many times slower, on CPUs without native bf16
    summary = main(argv)
    labels = _dev_labels(shared_data("glue/SST-2"), "sst2", 200)
    majority = max(labels.count(0), labels.count(1)) / 200
    accuracy = summary["eval_metrics"]["eval_accuracy"]
    print(f"{loss_type}: accuracy {accuracy:.3f}, majority class {majority:.3f}")
    assert accuracy > majority + 0.15, (accuracy, majority)


def test_mnli_three_classes_and_two_evaluation_splits(tiny_model, tmp_path) -> None:
    """MNLI in its original layout (written here): 3 classes, pair noise, matched and mismatched evaluation."""
    head = "index\tpromptID\tpairID\tgenre\ts1b\ts2b\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tgold_label\n"
    labels = ["entailment", "neutral", "contradiction"]
    rows = "".join(
        f"{i}\t1\t1e\tgov\t(\t(\t(\t(\tpremise {i}\thypothesis {i}\tx\t{labels[i % 3]}\n" for i in range(30)
    )
    data = tmp_path / "MNLI"
    data.mkdir()
    (data / "train.tsv").write_text(head + rows)
    (data / "dev_matched.tsv").write_text(head + rows[: rows.index("10\t1")])
    (data / "dev_mismatched.tsv").write_text(head + rows[: rows.index("6\t1")])
    out = tmp_path / "run"
    argv = recipe_argv(tiny_model, "mnli", data, out, "--label_noise", "0.5", "--label_noise_type", "pair")
    argv += ["--ignore_mismatched_sizes", "true"]  # the tiny checkpoint has a 2-class head
    summary = main(argv)
    results = _read(out / "eval_results.json")
    assert results["eval_samples"] == 10 and results["eval_samples_mm"] == 6
    assert 0.0 <= results["eval_accuracy"] <= 1.0 and 0.0 <= results["eval_accuracy_mm"] <= 1.0
    assert list(_read(out / "config.json")["id2label"].values()) == labels
    assert summary["loss"]["num_classes"] == 3
    noise = _read(out / "label_noise.json")
    assert noise["num_classes"] == 3 and noise["noise_type"] == "pair"
