"""Image fixtures for the vision tests, built from real data: scikit-learn's 8x8 handwritten digits, upscaled."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def digit_images(size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits as uint8 grey images of ``size`` x ``size`` (bilinear upscaling) and their labels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = np.clip(np.rint(digits.images / 16.0 * 255), 0, 255).astype(np.uint8)
    images = np.stack([np.asarray(Image.fromarray(x).resize((size, size), Image.BILINEAR)) for x in small])
    return images, digits.target.astype(np.int64)


def write_digit_folders(
    root: Path, size: int = 16, per_class: tuple[int, int, int] = (30, 8, 10)
) -> dict[str, list]:
    """``root/{train,validation,test}/<digit>/<index>.png`` with ``per_class`` images of each digit per split.

    Returns ``{split: [(path, label), ...]}`` for checks independent of the recipe.
    """
    from PIL import Image

    images, labels = digit_images(size)
    written: dict[str, list] = {"train": [], "validation": [], "test": []}
    for digit in range(10):
        index = np.flatnonzero(labels == digit)
        start = 0
        for split, count in zip(written, per_class, strict=True):
            for i in index[start : start + count]:
                folder = root / split / str(digit)
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{i:04d}.png"
                Image.fromarray(images[i], mode="L").save(path)
                written[split].append((path, digit))
            start += count
    return written


def cifar_layout(n_train: int = 60, n_test: int = 20, fine: bool = False):
    """A tiny data set with the Hub layout of CIFAR-10 (``img``, ``label``) or CIFAR-100 (``img``, ``fine_label``,
    ``coarse_label``): real digit images as 32x32 RGB, the digit as label."""
    import datasets
    from PIL import Image

    images, labels = digit_images(32)
    rgb = [Image.fromarray(np.repeat(x[:, :, None], 3, axis=2), mode="RGB") for x in images]
    if fine:
        features = datasets.Features(
            {
                "img": datasets.Image(),
                "fine_label": datasets.ClassLabel(names=[f"fine{i}" for i in range(100)]),
                "coarse_label": datasets.ClassLabel(names=[f"coarse{i}" for i in range(20)]),
            }
        )
    else:
        features = datasets.Features(
            {"img": datasets.Image(), "label": datasets.ClassLabel(names=CIFAR10_NAMES)}
        )

    def split(lo: int, hi: int):
        data = {"img": rgb[lo:hi]}
        if fine:
            data["fine_label"] = labels[lo:hi].tolist()
            data["coarse_label"] = (labels[lo:hi] // 5).tolist()
        else:
            data["label"] = labels[lo:hi].tolist()
        return datasets.Dataset.from_dict(data, features=features)

    return datasets.DatasetDict({"train": split(0, n_train), "test": split(n_train, n_train + n_test)})
