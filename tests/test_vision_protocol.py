"""The TCE paper's protocol: its settings and their overrides, the step-decay learning rate measured during real
training, the optimizer, the batch split over processes, and the model of the best validation epoch being the one
tested; the torch augmentation and normalisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import TrainerCallback
from vision_data import write_digit_folders

from hf_squareloss.training_args import SquareLossTrainingArguments
from hf_squareloss.vision.arguments import ImageProtocolArguments
from hf_squareloss.vision.protocol import EpochStepDecay, configure_image_protocol
from hf_squareloss.vision.transforms import ImageTransform, channel_statistics, random_shift


def _args(tmp_path: Path, **kwargs) -> SquareLossTrainingArguments:
    return SquareLossTrainingArguments(
        output_dir=str(tmp_path), do_train=True, use_cpu=True, report_to="none", **kwargs
    )


def _configure(tmp_path: Path, explicit=(), protocol=None, **kwargs):
    protocol = protocol or ImageProtocolArguments(protocol="tce_paper")
    return configure_image_protocol(protocol, _args(tmp_path, **kwargs), None, None, set(explicit))


def test_tce_paper_settings(tmp_path: Path) -> None:
    setup = _configure(tmp_path)
    args = setup.training_args
    assert args.learning_rate == 0.1 and args.weight_decay == 1e-4 and args.num_train_epochs == 256
    assert args.optim == "sgd" and args.optim_args == "momentum=0.9,nesterov=True"
    assert args.per_device_train_batch_size == 128 and args.warmup_steps == 0
    assert args.eval_strategy == "epoch" and args.save_strategy == "epoch"
    assert args.load_best_model_at_end and args.metric_for_best_model == "accuracy" and args.greater_is_better
    assert setup.record["lr_schedule"] == {"milestones": [128.0, 192.0], "decay": 0.1}
    assert setup.record["batch_size"] == 128 and not setup.callbacks  # no early stopping: all 256 epochs


def test_tce_paper_keeps_what_the_command_line_sets(tmp_path: Path) -> None:
    setup = _configure(
        tmp_path,
        explicit={"learning_rate", "num_train_epochs", "per_device_train_batch_size"},
        learning_rate=0.05,
        num_train_epochs=10,
        per_device_train_batch_size=16,
        protocol=ImageProtocolArguments(protocol="tce_paper", lr_milestones=[5, 8], lr_decay=0.2),
    )
    args = setup.training_args
    assert (args.learning_rate, args.num_train_epochs, args.per_device_train_batch_size) == (0.05, 10, 16)
    assert args.optim == "sgd" and args.weight_decay == 1e-4  # the others still the paper's
    assert setup.record["lr_schedule"] == {"milestones": [5.0, 8.0], "decay": 0.2}
    assert setup.record["kept_from_command_line"] == [
        "learning_rate",
        "num_train_epochs",
        "per_device_train_batch_size",
    ]
    own = _configure(tmp_path, explicit={"lr_scheduler_type"}, lr_scheduler_type="cosine")
    assert own.record["lr_schedule"] is None and own.training_args.lr_scheduler_type.value == "cosine"


def test_the_batch_of_128_is_split_over_accumulation(tmp_path: Path) -> None:
    args = _configure(tmp_path, gradient_accumulation_steps=4).training_args
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 128
    with pytest.raises(ValueError, match="does not split"):
        _configure(tmp_path, gradient_accumulation_steps=3)


def test_epoch_step_decay_by_hand() -> None:
    decay = EpochStepDecay(steps_per_epoch=10, milestones=(2.0, 3.5), decay=0.1)
    expected = [1.0] * 20 + [0.1] * 15 + [0.01] * 15  # steps 0-19, 20-34, 35-49
    assert [decay(s) for s in range(50)] == pytest.approx(expected)


class _LearningRates(TrainerCallback):
    def __init__(self) -> None:
        self.rates: list[float] = []
        self.optimizer = None

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.optimizer = optimizer
        self.rates.append(optimizer.param_groups[0]["lr"])


def test_schedule_optimizer_and_kept_epoch_in_a_real_run(tmp_path: Path) -> None:
    """4 epochs of 5 steps with milestones at epochs 2 and 3: the learning rate of each update is 0.1, 0.01, 0.001
    by epoch; SGD with Nesterov momentum 0.9 and weight decay 1e-4; the tested model is the best validation epoch."""
    from hf_squareloss.runs import skeleton
    from hf_squareloss.vision import run as recipe

    root = tmp_path / "digits"
    write_digit_folders(root, size=8, per_class=(16, 6, 6))  # 160 training images: 5 steps of 32
    recorder = _LearningRates()
    original = skeleton.EpochProgressCallback

    class Spy(original):  # the run's progress callback, plus the recorder
        def on_step_begin(self, *args, **kwargs):
            return recorder.on_step_begin(*args, **kwargs)

    skeleton.EpochProgressCallback = Spy
    try:
        out = tmp_path / "run"
        summary = recipe.main([
            "--model_type", "resnet20", "--train_dir", str(root / "train"), "--validation_dir",
            str(root / "validation"), "--test_dir", str(root / "test"), "--output_dir", str(out), "--do_train",
            "--do_eval", "--do_predict", "--protocol", "tce_paper", "--num_train_epochs", "4", "--lr_milestones",
            "2", "3", "--per_device_train_batch_size", "32", "--use_cpu", "--report_to", "none", "--disable_tqdm",
            "true", "--keep_checkpoints", "false",
        ])  # fmt: skip
    finally:
        skeleton.EpochProgressCallback = original
    assert recorder.rates == pytest.approx([0.1] * 10 + [0.01] * 5 + [0.001] * 5)
    group = recorder.optimizer.param_groups[0]
    torch_optimizer = getattr(recorder.optimizer, "optimizer", recorder.optimizer)  # accelerate's wrapper
    assert isinstance(torch_optimizer, torch.optim.SGD)
    assert group["momentum"] == 0.9 and group["nesterov"] is True and group["weight_decay"] == 1e-4
    history = summary["history"]
    accuracies = [h["eval_accuracy"] for h in history]
    best = history[int(np.argmax(accuracies))]  # the first best, as the Trainer keeps it
    assert summary["model_epoch"] == best["epoch"] == summary["best_epoch"]
    results = json.loads((out / "all_results.json").read_text())
    assert results["eval_accuracy"] == pytest.approx(best["eval_accuracy"])  # the kept model was evaluated
    assert (
        json.loads((out / "dataset.json").read_text())["images"]["augmentation"] == "shift"
    )  # digits: no mirror


# ---- augmentation and normalisation -------------------------------------------------------------------------
def test_random_shift_is_a_translation_with_zero_fill() -> None:
    torch.manual_seed(0)
    x = torch.arange(1, 1 + 3 * 6 * 6, dtype=torch.float32).view(3, 6, 6)
    seen = set()
    for _ in range(200):
        y = random_shift(x, 2)
        assert y.shape == x.shape
        nonzero = torch.nonzero(y[0])
        top, left = (int(v) for v in nonzero.min(0).values)
        bottom, right = (int(v) for v in nonzero.max(0).values)
        # the kept part is the original shifted by (dy, dx), everything else is zero
        dy = top if top > 0 else -(5 - bottom)
        dx = left if left > 0 else -(5 - right)
        expected = torch.zeros_like(x)
        src = x[:, max(0, -dy) : 6 - max(0, dy), max(0, -dx) : 6 - max(0, dx)]
        expected[:, max(0, dy) : 6 - max(0, -dy), max(0, dx) : 6 - max(0, -dx)] = src
        assert torch.equal(y, expected)
        seen.add((dy, dx))
    assert seen == {(a, b) for a in range(-2, 3) for b in range(-2, 3)}  # every offset up to 2 pixels


def test_transform_flip_normalise_and_statistics() -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8) for _ in range(4)]
    images = [Image.fromarray(a, mode="RGB") for a in arrays]
    mean, std = channel_statistics(images, 3)
    stacked = np.stack(arrays).astype(np.float64) / 255
    assert mean == pytest.approx(stacked.mean(axis=(0, 1, 2)), abs=1e-6)
    assert std == pytest.approx(stacked.std(axis=(0, 1, 2)), abs=1e-6)
    evaluation = ImageTransform(channels=3, mean=mean, std=std)
    out = evaluation({"image": images, "label": [1, 2, 3, 4]})
    assert out["labels"] == [1, 2, 3, 4]
    x0 = (arrays[0].astype(np.float32) / 255 - np.array(mean, dtype=np.float32)) / np.array(
        std, dtype=np.float32
    )
    assert torch.allclose(out["pixel_values"][0], torch.from_numpy(x0.transpose(2, 0, 1)), atol=1e-5)
    torch.manual_seed(1)
    flipping = ImageTransform(channels=3, mean=mean, std=std, flip=True, train=True)
    plain = out["pixel_values"][0]
    outcomes = []
    for _ in range(40):
        y = flipping.one(images[0])
        outcomes.append(
            "mirror" if torch.equal(y, plain.flip(-1)) else "same" if torch.equal(y, plain) else "other"
        )
    assert set(outcomes) == {"mirror", "same"}  # mirrored about half of the time, never anything else
    grey = ImageTransform(channels=1, mean=[0.5], std=[0.25], size=(10, 14))
    assert grey.one(images[0]).shape == (1, 10, 14)
    with pytest.raises(ValueError, match="one per channel"):
        ImageTransform(channels=3, mean=[0.5], std=[0.5])
