"""Command-line arguments of the image-classification recipe: its model and data arguments, and its protocol
arguments (every recipe's, :class:`hf_squareloss.runs.arguments.ProtocolArguments`, and the TCE paper's). The label
noise (:class:`hf_squareloss.runs.arguments.LabelNoiseArguments`) and
:class:`~hf_squareloss.SquareLossTrainingArguments` are every recipe's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..runs.arguments import PROTOCOLS, ProtocolArguments
from ..runs.families import FAMILY_TABLE
from .data import HUB_DATASETS, known_dataset
from .resnet import ARCHITECTURES
from .transforms import AUGMENTATIONS

__all__ = [
    "TASK_PREFIX",
    "VISION_PROTOCOLS",
    "ImageDataArguments",
    "ImageModelArguments",
    "ImageProtocolArguments",
]

VISION_PROTOCOLS = (*PROTOCOLS, "tce_paper")
TASK_PREFIX = FAMILY_TABLE["vision"].prefix
"""What every image task name starts with (``vision:cifar10``), as the table of task families says."""


@dataclass
class ImageModelArguments:
    """Which model to train: a pretrained image classifier, or a CIFAR ResNet from scratch."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Path or Hub id of any model that AutoModelForImageClassification loads. Or use --model_type."
        },
    )
    model_type: str | None = field(
        default=None,
        metadata={
            "help": "Train a CIFAR ResNet of He et al. from scratch (the TCE paper's ResNet-20; 0.27 M parameters).",
            "choices": list(ARCHITECTURES),
        },
    )
    num_channels: int | None = field(
        default=None,
        metadata={
            "help": "--model_type: input channels (default: 1 when the training images are grey, else 3). A "
            "pretrained model keeps its own and the images are converted to it."
        },
    )
    config_name: str | None = field(
        default=None, metadata={"help": "Pretrained config name or path, if not the same as the model's."}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where to store models and data sets downloaded from the Hub."}
    )
    model_revision: str = field(
        default="main", metadata={"help": "Model version to use (branch name, tag or commit id)."}
    )
    base_model_id: str | None = field(
        default=None,
        metadata={"help": "Hub id of the model fine-tuned, for the model card, when it is a local folder."},
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "Load a checkpoint whose classification head has another number of labels."},
    )

    def __post_init__(self) -> None:
        if (self.model_name_or_path is None) == (self.model_type is None):
            raise ValueError(
                "pass either --model_name_or_path (a pretrained image classifier) or --model_type "
                f"({'/'.join(ARCHITECTURES)}, trained from scratch), not both nor neither"
            )
        if self.model_type is not None and self.model_type not in ARCHITECTURES:
            raise ValueError(f"--model_type must be one of {list(ARCHITECTURES)}, got {self.model_type!r}")
        if self.num_channels is not None:
            if self.model_type is None:
                raise ValueError("--num_channels applies to --model_type; a pretrained model keeps its own")
            if self.num_channels not in (1, 3):
                raise ValueError(f"--num_channels must be 1 or 3, got {self.num_channels}")

    @property
    def name(self) -> str:
        return self.model_type or str(self.model_name_or_path)


@dataclass
class ImageDataArguments:
    """Which images to train, validate and test on, and how to prepare them."""

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": f"'imagefolder' (with --train_dir...), a Hub data set by short name ({', '.join(HUB_DATASETS)}: "
            "their columns are known) or by id, or a folder written by datasets' save_to_disk. Default: "
            "imagefolder when --train_dir is given."
        },
    )
    dataset_config_name: str | None = field(
        default=None,
        metadata={"help": "Configuration of the Hub data set (svhn: cropped_digits by default)."},
    )
    dataset_revision: str | None = field(
        default=None, metadata={"help": "Revision of the Hub data set (branch, tag or commit id)."}
    )
    task_name: str | None = field(
        default=None,
        metadata={
            "help": "Name of the task in the run's files and reports, 'vision:<name>' (default: vision:<data set "
            "short name>, or vision:<training folder's parent folder> for local folders)."
        },
    )
    train_dir: str | None = field(
        default=None, metadata={"help": "Training images: <dir>/<class name>/<image file>."}
    )
    validation_dir: str | None = field(
        default=None,
        metadata={
            "help": "Validation images, same layout. Default: a hold-out of --validation_size from train."
        },
    )
    test_dir: str | None = field(
        default=None, metadata={"help": "Test images, same layout (for --do_predict)."}
    )
    image_column_name: str | None = field(
        default=None,
        metadata={"help": "Image column of a Hub data set (default: known, or its one Image column)."},
    )
    label_column_name: str | None = field(
        default=None,
        metadata={
            "help": "Label column of a Hub data set (default: known, else 'label' or its one ClassLabel)."
        },
    )
    validation_size: float = field(
        default=5000,
        metadata={
            "help": "Without a validation split: images held out of train for validation (a number, or a "
            "fraction below 1), stratified by class. 5,000 as in the TCE paper."
        },
    )
    validation_split_seed: int = field(
        default=0,
        metadata={
            "help": "Seed of the validation hold-out, independent of --seed so that all runs share it."
        },
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={"help": "Keep only the first N training images (after the hold-out, before label noise)."},
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N validation images."}
    )
    max_predict_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N test images."}
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "Resize every image to this square size (default: the pretrained model's image processor's "
            "size, else the images' own size)."
        },
    )
    augmentation: str | None = field(
        default=None,
        metadata={
            "help": "Training augmentation: 'shift' (random translation of up to --shift_pixels, zero padding), "
            "'shift_flip' (and horizontal mirror), 'none'. Default: the protocol's (tce_paper: shift_flip for "
            "CIFAR, shift for digits and local folders), else none.",
            "choices": list(AUGMENTATIONS),
        },
    )
    shift_pixels: int = field(default=4, metadata={"help": "Largest translation of 'shift', in pixels."})
    image_mean: list[float] | None = field(
        default=None,
        metadata={
            "help": "Per-channel mean for normalisation (default: the pretrained model's image processor's, else "
            "computed on the training split)."
        },
    )
    image_std: list[float] | None = field(
        default=None,
        metadata={"help": "Per-channel standard deviation for normalisation (default: as the mean)."},
    )

    def __post_init__(self) -> None:
        if self.dataset_name is None:
            if not self.train_dir:
                raise ValueError(
                    "pass --dataset_name (a Hub data set, e.g. cifar10) or --train_dir (a folder of images)"
                )
            self.dataset_name = "imagefolder"
        if self.dataset_name == "imagefolder":
            if not self.train_dir:
                raise ValueError("--dataset_name imagefolder needs --train_dir (<dir>/<class name>/<image>)")
        elif self.train_dir or self.validation_dir or self.test_dir:
            raise ValueError(
                f"--train_dir/--validation_dir/--test_dir go with --dataset_name imagefolder, not {self.dataset_name!r}"
            )
        if not self.validation_size > 0:
            raise ValueError(f"--validation_size must be > 0, got {self.validation_size}")
        if self.validation_size >= 1 and self.validation_size != int(self.validation_size):
            raise ValueError(
                f"--validation_size must be a whole number or a fraction below 1, got {self.validation_size}"
            )
        for name in ("max_train_samples", "max_eval_samples", "max_predict_samples", "image_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")
        if self.shift_pixels < 0:
            raise ValueError(f"--shift_pixels must be >= 0, got {self.shift_pixels}")
        if self.augmentation is not None and self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"--augmentation must be one of {AUGMENTATIONS}, got {self.augmentation!r}")
        if (self.image_mean is None) != (self.image_std is None):
            raise ValueError("pass both --image_mean and --image_std, or neither")
        if self.task_name is None:
            self.task_name = TASK_PREFIX + self.default_task_suffix()
        elif not self.task_name.startswith(TASK_PREFIX):
            self.task_name = TASK_PREFIX + self.task_name

    def default_task_suffix(self) -> str:
        from pathlib import Path

        known = known_dataset(self.dataset_name)
        if known is not None:
            return known.name
        if self.dataset_name == "imagefolder":
            train = Path(str(self.train_dir)).expanduser().resolve()
            return train.parent.name if train.name in ("train", "training") else train.name
        return Path(str(self.dataset_name)).name

    def default_augmentation(self) -> str:
        """The TCE paper's augmentation for this data: mirror only natural images (CIFAR)."""
        known = known_dataset(self.dataset_name)
        return known.augmentation if known is not None else "shift"


@dataclass
class ImageProtocolArguments(ProtocolArguments):
    """How long to train and which model to keep: every recipe's protocols, and the TCE paper's."""

    protocol: str = field(
        default="early_stopping",
        metadata={
            "help": "'tce_paper': SGD with Nesterov momentum 0.9, learning rate 0.1 divided by 10 at epochs 128 "
            "and 192 of 256, weight decay 1e-4, batch 128, the data set's augmentation, per-channel "
            "normalisation, and the model of the epoch with the best validation accuracy is the one tested; any "
            "of these can be overridden by its own flag. 'early_stopping', 'same_epochs', 'fixed_epochs': as "
            "in every recipe (Hui & Belkin's protocols).",
            "choices": list(VISION_PROTOCOLS),
        },
    )
    lr_milestones: list[float] | None = field(
        default=None,
        metadata={
            "help": "tce_paper: epochs at which the learning rate is multiplied by --lr_decay (128 192)."
        },
    )
    lr_decay: float | None = field(
        default=None, metadata={"help": "tce_paper: factor applied at each milestone (0.1)."}
    )

    known_protocols: ClassVar[tuple[str, ...]] = VISION_PROTOCOLS

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.protocol != "tce_paper" and (self.lr_milestones is not None or self.lr_decay is not None):
            raise ValueError("--lr_milestones and --lr_decay apply to --protocol tce_paper")
        milestones = list(self.lr_milestones or [])
        if any(m <= 0 for m in milestones) or milestones != sorted(milestones):
            raise ValueError(f"--lr_milestones must be increasing epochs > 0, got {self.lr_milestones}")
        if self.lr_decay is not None and not 0 < self.lr_decay <= 1:
            raise ValueError(f"--lr_decay must be in (0, 1], got {self.lr_decay}")
