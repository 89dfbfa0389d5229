"""The image recipe's data: the splits and their subsets, label noise on the training split, the transforms each
split gets, and what ``dataset.json`` records about them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..runs.arguments import LabelNoiseArguments
from ..runs.console import say
from .arguments import ImageDataArguments

__all__ = ["ImageTask", "add_training_noise", "image_dataset_record", "load_splits", "set_transforms"]


@dataclass(frozen=True)
class ImageTask:
    """What the run records and the comparison need to know about an image task."""

    name: str
    label_names: tuple[str, ...]
    main_metric: str = "accuracy"
    metrics: tuple[str, ...] = ("accuracy",)
    is_regression: bool = False

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def load_splits(
    data_args: ImageDataArguments, training_args: Any, cache_dir: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The train, validation and (when there is one) test splits, each cut to its ``--max_*_samples``, and where
    they came from. ``ValueError`` when ``--do_predict`` finds no test split."""
    from .data import load_image_splits

    with training_args.main_process_first(desc="loading the images"):
        splits, source = load_image_splits(data_args, cache_dir=cache_dir)
    if training_args.do_predict and "test" not in splits:
        raise ValueError(
            f"--do_predict needs a test split: {data_args.dataset_name} has none"
            + (" (pass --test_dir)" if data_args.dataset_name == "imagefolder" else "")
        )
    for split, limit in (
        ("train", data_args.max_train_samples),
        ("validation", data_args.max_eval_samples),
        ("test", data_args.max_predict_samples),
    ):
        if limit is not None and split in splits:
            splits[split] = splits[split].select(range(min(limit, len(splits[split]))))
    return splits, source


def add_training_noise(
    splits: dict[str, Any], noise_args: LabelNoiseArguments, num_labels: int
) -> dict[str, Any]:
    """Corrupt the training labels (only them) in place; return what ``label_noise.json`` holds."""
    from ..noise import add_label_noise

    splits["train"], report = add_label_noise(
        splits["train"],
        noise_args.label_noise,
        noise_type=noise_args.label_noise_type,
        seed=noise_args.noise_seed,
        exact=noise_args.label_noise_exact,
        num_classes=num_labels,
    )
    say(
        f"label noise {report.noise_type} {report.rate:g}: {report.num_replaced} training labels redrawn, "
        f"{report.num_flipped} changed (realised rate {report.realised_rate:.4f}, expected "
        f"{report.expected_flip_rate:.4f})"
    )
    return {
        **report.to_dict(),
        "split": "train",
        "indices_of": "the training split after the validation hold-out and --max_train_samples",
        "settings": {k: getattr(noise_args, k) for k in noise_args.__dataclass_fields__},
    }


def set_transforms(
    splits: dict[str, Any],
    data_args: ImageDataArguments,
    protocol: str,
    processor: dict[str, Any],
    channels: int,
    first_image: Any,
) -> dict[str, Any]:
    """Give each split its transform: size, per-channel normalisation and (train only) augmentation, from the command
    line, else the pretrained model's image processor, else the images (size) and the training split (statistics),
    and the protocol's augmentation. Returns what ``dataset.json`` records under ``images``."""
    from .model import PIPELINE_PROCESSOR_NOTE
    from .transforms import ImageTransform, channel_statistics

    if data_args.image_size is not None:
        size: tuple[int, int] | None = (data_args.image_size, data_args.image_size)
    else:
        size = processor.get("size") or (first_image.height, first_image.width)
    if data_args.image_mean is not None:
        mean, std, normalisation = list(data_args.image_mean), list(data_args.image_std or []), "command line"
    elif "mean" in processor and len(processor["mean"]) == channels:
        mean, std, normalisation = processor["mean"], processor["std"], "image processor"
    else:
        mean, std = channel_statistics(splits["train"]["image"], channels, size)
        normalisation = "training split"
    augmentation = data_args.augmentation or (
        data_args.default_augmentation() if protocol == "tce_paper" else "none"
    )
    shift = data_args.shift_pixels if augmentation != "none" else 0
    common = {"channels": channels, "mean": mean, "std": std, "size": size}
    splits["train"].set_transform(
        ImageTransform(**common, shift=shift, flip=augmentation == "shift_flip", train=True)
    )
    for split in ("validation", "test"):
        if split in splits:
            splits[split].set_transform(ImageTransform(**common))
    return {
        "channels": channels,
        "size": list(size) if size else None,
        "mean": mean,
        "std": std,
        "normalisation_from": normalisation,
        "augmentation": augmentation,
        "shift_pixels": shift,
        "image_processor": PIPELINE_PROCESSOR_NOTE if channels == 1 else "saved with the model",
    }


def image_dataset_record(
    task: ImageTask,
    source: dict[str, Any],
    splits: dict[str, Any],
    noise_record: dict[str, Any] | None,
    image_record: dict[str, Any],
) -> dict[str, Any]:
    """What ``dataset.json`` holds: the task, where its images came from, the splits used and their label counts
    (the training labels after noise), and how the images were prepared."""
    names = list(task.label_names)
    return {
        "task": task.name,
        **source,
        "splits_used": {split: len(ds) for split, ds in splits.items()},
        "eval_split": "validation",
        "eval_splits": ["validation"],
        "label_names": names,
        "label_counts": {
            split: {
                names[i]: int(c)
                for i, c in enumerate(
                    np.bincount(np.asarray(ds.with_format(None)["label"]), minlength=len(names))
                )
            }
            for split, ds in splits.items()
        },
        "label_noise": noise_record is not None,
        "images": image_record,
    }
