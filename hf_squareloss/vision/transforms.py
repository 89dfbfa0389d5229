"""Image preprocessing in plain torch: to tensor, resize, the TCE paper's augmentation, per-channel normalisation.

* ``shift``: pad the image with ``shift`` black pixels on every side and crop back to its size at a random offset,
  i.e. a random translation of up to ``shift`` pixels in each direction (4 in the TCE paper);
* ``flip``: mirror left-right with probability 1/2 (CIFAR only: it would turn digits into other shapes);
* normalisation: ``(x - mean) / std`` per channel, with the training split's statistics by default
  (:func:`channel_statistics`).

Random draws use torch's global generator, which the Trainer seeds (and re-seeds in each data-loader worker).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["AUGMENTATIONS", "ImageTransform", "channel_statistics", "to_tensor"]

AUGMENTATIONS = ("none", "shift", "shift_flip")


def to_tensor(image: Any, channels: int) -> Tensor:
    """A PIL image (or array) as a ``(channels, H, W)`` float tensor in [0, 1]; grey is repeated to 3 channels,
    colour is converted to grey (ITU-R 601 luma, PIL's) for 1 channel."""
    if hasattr(image, "convert"):
        image = image.convert("L" if channels == 1 else "RGB")
    array = np.array(image, dtype=np.uint8)  # a writable copy
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] != channels:
        if array.shape[2] == 1:
            array = np.repeat(array, channels, axis=2)
        else:
            raise ValueError(f"cannot turn an image of {array.shape[2]} channels into {channels}")
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float().div_(255.0)


def _resize(x: Tensor, size: tuple[int, int] | None) -> Tensor:
    if size is None or tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def random_shift(x: Tensor, shift: int) -> Tensor:
    """Translate ``x (C, H, W)`` by a random offset in ``[-shift, shift]`` along each axis, filling with zeros."""
    if shift <= 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (shift, shift, shift, shift))
    top, left = (int(v) for v in torch.randint(0, 2 * shift + 1, (2,)))
    return padded[:, top : top + h, left : left + w]


def random_flip(x: Tensor) -> Tensor:
    return x.flip(-1) if bool(torch.rand(()) < 0.5) else x


@dataclass
class ImageTransform:
    """The ``set_transform`` of a split: ``{"image", "label"}`` batches -> ``{"pixel_values", "labels"}``."""

    channels: int
    mean: Sequence[float]
    std: Sequence[float]
    size: tuple[int, int] | None = None
    shift: int = 0
    flip: bool = False
    train: bool = False

    def __post_init__(self) -> None:
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"image mean and std need {self.channels} values (one per channel), got {list(self.mean)} and "
                f"{list(self.std)}"
            )
        if min(self.std) <= 0:
            raise ValueError(f"image std must be > 0, got {list(self.std)}")
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)

    def one(self, image: Any) -> Tensor:
        x = _resize(to_tensor(image, self.channels), self.size)
        if self.train:
            x = random_shift(x, self.shift)
            if self.flip:
                x = random_flip(x)
        return (x - self._mean) / self._std

    def __call__(self, batch: Mapping[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"pixel_values": [self.one(image) for image in batch["image"]]}
        if "label" in batch:
            out["labels"] = list(batch["label"])
        return out


def channel_statistics(
    images: Iterable[Any], channels: int, size: tuple[int, int] | None = None
) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of the pixels of ``images`` (in [0, 1], after resizing)."""
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for image in images:
        x = _resize(to_tensor(image, channels), size).double()
        total += x.sum(dim=(1, 2))
        squares += (x * x).sum(dim=(1, 2))
        count += x.shape[1] * x.shape[2]
    if count == 0:
        raise ValueError("no images to compute the normalisation statistics from")
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt()
    return mean.tolist(), [max(s, 1e-6) for s in std.tolist()]
