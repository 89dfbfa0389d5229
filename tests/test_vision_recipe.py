"""The image-classification recipe end to end on real images: scikit-learn's digits as an image folder (upscaled to
16x16), every loss, the output folder, test accuracy against the saved model, the validation hold-out, label noise,
the Hub column layouts of CIFAR-10/100 and SVHN (a tiny fixture in their format), pretrained models, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from vision_data import CIFAR10_NAMES, cifar_layout, write_digit_folders

from hf_squareloss.registry import loss_types
from hf_squareloss.vision.arguments import ImageDataArguments
from hf_squareloss.vision.data import ImageDataError, load_image_splits
from hf_squareloss.vision.run import main


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> tuple[Path, dict[str, list]]:
    root = tmp_path_factory.mktemp("digits")
    return root, write_digit_folders(root)


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def argv_for(root: Path, out: Path, *extra: str, splits=("train", "validation", "test")) -> list[str]:
    argv = ["--model_type", "resnet20", "--output_dir", str(out), "--do_train", "--do_eval"]
    for split in splits:
        argv += [f"--{split}_dir", str(root / split)]
    if "test" in splits:
        argv.append("--do_predict")
    return [
        *argv,
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "32",
        "--learning_rate",
        "0.05",
        "--use_cpu",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--logging_strategy",
        "epoch",
        *extra,
    ]


@pytest.mark.parametrize("loss_type", loss_types())
def test_every_loss_end_to_end(digits, tmp_path: Path, loss_type: str) -> None:
    root, written = digits
    out = tmp_path / "run"
    summary = main(argv_for(root, out, "--loss_type", loss_type))
    results = _read(out / "all_results.json")
    assert 0.0 <= results["eval_accuracy"] <= 1.0 and 0.0 <= results["test_accuracy"] <= 1.0
    assert results["eval_samples"] == len(written["validation"]) == 80
    assert results["test_samples"] == len(written["test"]) == 100
    assert results["train_samples"] == 300
    config = _read(out / "config.json")
    assert config["hf_squareloss"]["loss_type"] == loss_type and config["hf_squareloss"]["num_classes"] == 10
    assert config["model_type"] == "cifar_resnet" and config["num_channels"] == 1  # grey digits
    assert list(config["id2label"].values()) == [str(d) for d in range(10)]
    assert (
        summary["task"] == "vision:" + root.name
        and summary["test_metrics"]["test_accuracy"] == results["test_accuracy"]
    )
    for name in (
        "run_args.json",
        "dataset.json",
        "run_summary.json",
        "eval_results.json",
        "test_results.json",
    ):
        assert (out / name).is_file(), name
    card = (out / "README.md").read_text()  # the model card, with both splits' accuracy in its model-index
    assert (
        "pipeline_tag: image-classification" in card and "split: test" in card and "split: validation" in card
    )
    assert f"value: {results['test_accuracy']}" in card and f"loss_type = {loss_type}" in card


def test_test_accuracy_and_normalisation_are_what_the_saved_model_gives(digits, tmp_path: Path) -> None:
    from PIL import Image
    from transformers import AutoModelForImageClassification

    root, written = digits
    out = tmp_path / "run"
    main(argv_for(root, out, "--loss_type", "square", "--num_train_epochs", "2"))
    images = json.loads((out / "dataset.json").read_text())["images"]
    # the statistics are the training folder's pixels, computed here with numpy
    pixels = np.stack([np.asarray(Image.open(p), dtype=np.float64) / 255 for p, _ in written["train"]])
    assert images["mean"] == pytest.approx([pixels.mean()], abs=1e-6)
    assert images["std"] == pytest.approx([pixels.std()], abs=1e-6)
    assert images["augmentation"] == "none" and images["size"] == [16, 16]
    model = AutoModelForImageClassification.from_pretrained(out).eval()
    test = np.stack([np.asarray(Image.open(p), dtype=np.float32) / 255 for p, _ in written["test"]])
    x = torch.from_numpy((test - images["mean"][0]) / images["std"][0])[:, None]
    with torch.no_grad():
        predicted = model(x).logits.argmax(-1).numpy()
    truth = np.array([label for _, label in written["test"]])
    assert _read(out / "all_results.json")["test_accuracy"] == pytest.approx(
        float((predicted == truth).mean())
    )


def test_validation_is_a_seeded_stratified_hold_out(digits) -> None:
    root, _ = digits

    def splits(**kwargs):
        args = ImageDataArguments(train_dir=str(root / "train"), **kwargs)
        return load_image_splits(args)

    held, source = splits(validation_size=50)
    assert len(held["validation"]) == 50 and len(held["train"]) == 250
    assert np.bincount(held["validation"]["label"]).tolist() == [5] * 10  # stratified by class
    assert source["validation"] == {"held_out_from": "train", "size": 50, "seed": 0}

    def paths(ds):
        return {
            ds.cast_column("image", type(ds.features["image"])(decode=False))[i]["image"]["path"]
            for i in range(len(ds))
        }

    assert not paths(held["validation"]) & paths(held["train"])
    again, _ = splits(validation_size=50)
    assert paths(again["validation"]) == paths(held["validation"])
    other, _ = splits(validation_size=50, validation_split_seed=1)
    assert paths(other["validation"]) != paths(held["validation"])
    fraction, _ = splits(validation_size=0.2)
    assert len(fraction["validation"]) == 60
    with pytest.raises(ImageDataError, match="validation_size 300"):
        splits(validation_size=300)


def test_uniform_label_noise_on_the_training_split_only(digits, tmp_path: Path) -> None:
    root, _written = digits
    out = tmp_path / "run"
    extra = [
        "--label_noise",
        "0.5",
        "--label_noise_type",
        "uniform",
        "--label_noise_exact",
        "--noise_seed",
        "3",
    ]
    main(argv_for(root, out, *extra))
    noise = _read(out / "label_noise.json")
    assert noise["num_replaced"] == 150  # exactly round(0.5 * 300) labels redrawn from all 10 classes
    assert noise["expected_flip_rate"] == pytest.approx(0.45)
    assert (
        abs(noise["num_flipped"] - 135) <= 5 * (150 * 0.9 * 0.1) ** 0.5
    )  # about 1 in 10 redrawn keeps its class
    assert noise["realised_rate"] == pytest.approx(noise["num_flipped"] / 300)
    counts = _read(out / "dataset.json")["label_counts"]
    assert counts["validation"] == {str(d): 8 for d in range(10)}  # the folders' labels, untouched
    assert counts["test"] == {str(d): 10 for d in range(10)}
    assert sum(counts["train"].values()) == 300 and counts["train"] != {str(d): 30 for d in range(10)}


@pytest.mark.parametrize(
    ("name", "call", "label_names", "augmentation"),
    [
        ("cifar10", ("uoft-cs/cifar10", None), CIFAR10_NAMES, "shift_flip"),
        ("cifar100", ("uoft-cs/cifar100", None), [f"fine{i}" for i in range(100)], "shift_flip"),
        ("svhn", ("ufldl-stanford/svhn", "cropped_digits"), CIFAR10_NAMES, "shift"),
    ],
)
def test_hub_layouts_with_the_tce_protocol(
    monkeypatch, tmp_path: Path, name, call, label_names, augmentation
) -> None:
    import datasets

    calls = []
    fixture = cifar_layout(fine=name == "cifar100")
    if name == "svhn":  # SVHN's columns are image/label
        fixture = fixture.rename_column("img", "image")

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name))
        return fixture

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    out = tmp_path / "run"
    argv = [
        "--model_type", "resnet20", "--dataset_name", name, "--output_dir", str(out), "--do_train", "--do_eval",
        "--do_predict", "--validation_size", "20", "--protocol", "tce_paper", "--num_train_epochs", "1",
        "--lr_milestones", "1", "--per_device_train_batch_size", "20", "--use_cpu", "--report_to", "none",
        "--disable_tqdm", "true",
    ]  # fmt: skip
    main(argv)
    assert calls == [call]
    dataset = _read(out / "dataset.json")
    assert dataset["splits_used"] == {"train": 40, "validation": 20, "test": 20}
    assert dataset["images"]["channels"] == 3 and dataset["images"]["size"] == [32, 32]
    assert dataset["images"]["augmentation"] == augmentation
    config = _read(out / "config.json")
    assert list(config["id2label"].values()) == label_names
    results = _read(out / "all_results.json")
    assert results["eval_samples"] == 20 and results["test_samples"] == 20
    summary = _read(out / "run_summary.json")
    assert summary["task"] == f"vision:{name}" and summary["protocol"]["name"] == "tce_paper"


def test_saved_dataset_columns_are_found_or_asked_for(tmp_path: Path) -> None:
    cifar_layout(fine=True).save_to_disk(tmp_path / "saved")
    args = ImageDataArguments(dataset_name=str(tmp_path / "saved"), validation_size=10)
    with pytest.raises(ImageDataError, match="--label_column_name"):
        load_image_splits(args)  # two ClassLabel columns and no 'label': which one?
    args.label_column_name = "coarse_label"
    splits, source = load_image_splits(args)
    assert splits["train"].features["label"].num_classes == 20
    assert source["columns"] == {"image": "img", "label": "coarse_label"}
    assert set(splits) == {"train", "validation", "test"} and splits["train"].column_names == [
        "image",
        "label",
    ]


def test_pretrained_image_classifier_with_its_processor(digits, tmp_path: Path) -> None:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    root, _ = digits
    model_dir = tmp_path / "tiny-vit"
    config = ViTConfig(
        image_size=24, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=10,
    )  # fmt: skip
    torch.manual_seed(0)
    ViTForImageClassification(config).save_pretrained(model_dir)
    ViTImageProcessor(
        size={"height": 24, "width": 24}, image_mean=[0.4] * 3, image_std=[0.3] * 3
    ).save_pretrained(model_dir)
    out = tmp_path / "run"
    argv = argv_for(root, out, "--loss_type", "tce", "--learning_rate", "1e-3")
    argv[argv.index("--model_type") : argv.index("--model_type") + 2] = [
        "--model_name_or_path",
        str(model_dir),
    ]
    main(argv)
    images = _read(out / "dataset.json")["images"]
    assert images["size"] == [24, 24] and images["channels"] == 3  # the grey digits become RGB for the model
    assert images["mean"] == [0.4] * 3 and images["normalisation_from"] == "image processor"
    assert _read(out / "config.json")["hf_squareloss"]["loss_type"] == "tce"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--train_dir": "missing"}, "--train_dir .*missing: no such folder"),
        ({"--validation_dir": "flat"}, "holds image files directly"),
        ({"--validation_dir": "extra"}, "class folders that the training folder has not: \\['x'\\]"),
        ({"--validation_dir": "empty"}, "holds no image file"),
        ({"--model_name_or_path": "somewhere"}, "not both"),
        ({"--image_mean": "0.5"}, "both --image_mean and --image_std"),
        ({"--validation_size": "2.5"}, "whole number or a fraction"),
        ({"--lr_milestones": "2"}, "apply to --protocol tce_paper"),
        ({"--dataset_name": "cifar10"}, "go with --dataset_name imagefolder"),
        ({"--protocol": "tce_paper", "--max_steps": "3"}, "do not pass --max_steps"),
        ({"--protocol": "tce_paper", "--num_train_epochs": "1.5"}, "whole number of epochs"),
        ({"--label_noise": "1.0"}, "label_noise must be in"),
    ],
)
def test_bad_input_is_refused_with_its_name(digits, tmp_path: Path, change: dict, message: str) -> None:
    from PIL import Image

    root, written = digits
    (tmp_path / "flat").mkdir()
    Image.open(written["train"][0][0]).save(tmp_path / "flat" / "a.png")
    (tmp_path / "extra" / "x").mkdir(parents=True)
    Image.open(written["train"][0][0]).save(tmp_path / "extra" / "x" / "a.png")
    (tmp_path / "empty" / "3").mkdir(parents=True)
    (tmp_path / "empty" / "3" / "notes.txt").write_text("not an image")
    argv = argv_for(root, tmp_path / "run")
    for flag, value in change.items():
        if flag.endswith("_dir") and value in ("missing", "flat", "extra", "empty"):
            value = str(tmp_path / value)
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    with pytest.raises(ValueError, match=message):
        main(argv)
    assert not (tmp_path / "run" / "run_summary.json").exists()


def test_predict_needs_a_test_split(digits, tmp_path: Path) -> None:
    root, _ = digits
    argv = [*argv_for(root, tmp_path / "run", splits=("train", "validation")), "--do_predict"]
    with pytest.raises(ValueError, match=r"--do_predict needs a test split.*--test_dir"):
        main(argv)


def test_a_three_channel_run_is_served_by_the_image_classification_pipeline(digits, tmp_path: Path) -> None:
    """The saved image processor repeats the evaluation transform: the pipeline's scores are the model's scores
    on images normalised here with numpy, and its top labels give the recipe's test accuracy."""
    from PIL import Image
    from transformers import AutoModelForImageClassification, pipeline

    from hf_squareloss import logits_to_scores, pipeline_scores

    root, written = digits
    out = tmp_path / "run"
    main(argv_for(root, out, "--loss_type", "square", "--num_channels", "3"))
    images = _read(out / "dataset.json")["images"]
    assert images["channels"] == 3 and images["image_processor"] == "saved with the model"
    model = AutoModelForImageClassification.from_pretrained(out).eval()
    paths = [p for p, _ in written["test"]]
    grey = np.stack([np.asarray(Image.open(p), dtype=np.float32) / 255 for p in paths])
    x = (np.repeat(grey[:, None], 3, axis=1) - np.array(images["mean"])[:, None, None]) / np.array(
        images["std"]
    )[:, None, None]
    with torch.no_grad():
        expected = logits_to_scores(model(torch.from_numpy(x.astype(np.float32))).logits, model)

    classify = pipeline("image-classification", model=str(out), device="cpu")
    served = pipeline_scores(classify, [str(p) for p in paths])
    for row, scores in zip(served, expected, strict=True):
        by_label = {entry["label"]: entry["score"] for entry in row}
        got = torch.tensor([by_label[model.config.id2label[i]] for i in range(10)], dtype=torch.float64)
        torch.testing.assert_close(got, scores.double(), atol=1e-4, rtol=1e-4)
    truth = [model.config.id2label[label] for _, label in written["test"]]
    accuracy = np.mean([row[0]["label"] == t for row, t in zip(served, truth, strict=True)])
    assert _read(out / "all_results.json")["test_accuracy"] == pytest.approx(accuracy)


def test_a_grey_run_says_why_it_saves_no_image_processor(digits, tmp_path: Path) -> None:
    root, _ = digits
    out = tmp_path / "run"
    main(argv_for(root, out, "--loss_type", "ce", splits=("train", "validation")))
    assert _read(out / "dataset.json")["images"]["image_processor"].startswith("none saved")
    assert not (out / "preprocessor_config.json").exists()


def test_an_interrupted_early_stopping_run_resumes_from_its_checkpoint(
    digits, tmp_path: Path, interrupt_after_first_checkpoint
) -> None:
    """The trainer restores the early-stopping callback from the checkpoint as a new object; the run still takes it
    off before the final evaluations."""

    root, _ = digits
    out = tmp_path / "run"
    argv = argv_for(
        root, out, "--protocol", "early_stopping", "--num_train_epochs", "3", "--loss_type", "tce"
    )
    with interrupt_after_first_checkpoint(), pytest.raises(KeyboardInterrupt):
        main(argv)
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-10"]  # 300 images, batch 32
    summary = main(argv)
    assert [h["epoch"] for h in summary["history"]] == [1.0, 2.0, 3.0]
    assert _read(out / "trainer_state.json")["global_step"] == 30  # the first epoch was not redone
    assert summary["protocol"]["name"] == "early_stopping" and "test_accuracy" in summary["test_metrics"]
