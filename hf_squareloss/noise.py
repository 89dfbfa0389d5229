"""Synthetic label noise for robustness experiments (the TCE paper's protocol).

* ``symmetric``: each label, with probability ``rate``, is replaced by a *different* class chosen uniformly;
* ``pair``: each label, with probability ``rate``, becomes the next class, ``i -> (i + 1) mod C``;
* ``uniform`` (the TCE paper's): each label, with probability ``rate``, is replaced by a class drawn uniformly
  from all ``C`` classes, *possibly the same one*. A label therefore changes with probability
  ``rate * (C - 1) / C`` (0.72 at ``rate=0.8`` with 10 classes): the report's ``realised_rate`` counts changed
  labels, ``num_replaced`` the labels that were redrawn, ``expected_flip_rate`` is ``rate * (C - 1) / C``.

With ``exact=True`` exactly ``round(rate * n)`` labels are corrupted (chosen uniformly without replacement) instead
of corrupting each independently (for ``uniform``: redrawn, of which about ``1/C`` keep their class). The noise has its own seed, independent of the model's. Only the data you pass is
touched: corrupt the training split, never the evaluation one.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["NOISE_TYPES", "LabelNoise", "add_label_noise", "corrupt_labels", "true_label_stays_most_likely"]

NOISE_TYPES = ("symmetric", "pair", "uniform")


@dataclass
class LabelNoise:
    """The outcome of :func:`corrupt_labels`: what was asked and what was done."""

    noise_type: str
    rate: float
    exact: bool
    seed: int
    num_examples: int
    num_classes: int
    flipped_indices: list[int] = field(default_factory=list)
    """Examples whose label changed."""
    num_replaced: int | None = None
    """Examples whose label was corrupted (redrawn for ``uniform``; equal to the flipped ones otherwise)."""

    def __post_init__(self) -> None:
        if self.num_replaced is None:
            self.num_replaced = len(self.flipped_indices)

    @property
    def num_flipped(self) -> int:
        return len(self.flipped_indices)

    @property
    def realised_rate(self) -> float:
        """Fraction of the labels that changed."""
        return self.num_flipped / self.num_examples if self.num_examples else 0.0

    @property
    def expected_flip_rate(self) -> float:
        """Probability that a label changes: ``rate``, or ``rate * (C - 1) / C`` for ``uniform``."""
        if self.noise_type == "uniform":
            return self.rate * (self.num_classes - 1) / self.num_classes
        return self.rate

    @property
    def true_label_most_likely(self) -> bool:
        """See :func:`true_label_stays_most_likely`."""
        return true_label_stays_most_likely(self.rate, self.noise_type, self.num_classes)

    def to_dict(self, with_indices: bool = True) -> dict[str, Any]:
        out = asdict(self)
        out["true_label_most_likely"] = self.true_label_most_likely
        out["num_flipped"] = self.num_flipped
        out["realised_rate"] = self.realised_rate
        out["expected_flip_rate"] = self.expected_flip_rate
        if not with_indices:
            out.pop("flipped_indices")
        return out


def true_label_stays_most_likely(rate: float, noise_type: str, num_classes: int) -> bool:
    """Whether, for every class, the observed label is still most often the true one.

    For an item of class ``y`` the observed label is ``y`` with probability ``1 - rate`` (``1 - rate + rate / C``
    for ``uniform``); each other class gets ``rate / (C - 1)`` (``symmetric``), ``rate`` for ``y + 1`` (``pair``) or
    ``rate / C`` (``uniform``). So the true label stays the most likely one when ``rate < (C - 1) / C``
    (``symmetric``), ``rate < 1/2`` (``pair``) or ``rate < 1`` (``uniform``). Beyond that, the best fit to the
    noisy labels predicts a wrong class, whatever the loss: with two classes, symmetric noise at 0.8 turns the task
    into its opposite.
    """
    rate = _check(rate, noise_type, num_classes)
    if noise_type == "symmetric":
        return rate * num_classes < num_classes - 1
    if noise_type == "pair":
        return rate < 0.5
    return rate < 1.0


def _check(rate: float, noise_type: str, num_classes: int) -> float:
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"label noise rate must be a number in [0, 1], got {rate!r}") from None
    if not 0.0 <= rate <= 1.0:  # also refuses nan
        raise ValueError(f"label noise rate must be in [0, 1], got {rate}")
    if noise_type not in NOISE_TYPES:
        raise ValueError(f"unknown label noise type {noise_type!r}; choose one of {NOISE_TYPES}")
    if num_classes < 2:
        raise ValueError(f"label noise needs at least 2 classes, got {num_classes}")
    return rate


def corrupt_labels(
    labels: np.ndarray | list[int],
    num_classes: int,
    rate: float,
    *,
    noise_type: str = "symmetric",
    seed: int = 0,
    exact: bool = False,
) -> tuple[np.ndarray, LabelNoise]:
    """Return ``(noisy_labels, report)``; ``labels`` is not modified.

    Labels must be integers in ``[0, num_classes)``. ``symmetric`` and ``pair`` change every corrupted label;
    ``uniform`` redraws it from all classes (see the module docstring).
    """
    rate = _check(rate, noise_type, num_classes)
    if not true_label_stays_most_likely(rate, noise_type, num_classes):
        warnings.warn(
            f"{noise_type} label noise at rate {rate} with {num_classes} classes makes a wrong label more likely "
            "than the true one: the best fit to the noisy labels predicts a wrong class, whatever the loss "
            f"(see hf_squareloss.noise.true_label_stays_most_likely)",
            stacklevel=2,
        )
    clean = np.asarray(labels)
    if clean.ndim != 1 or not np.issubdtype(clean.dtype, np.integer):
        raise ValueError(
            f"labels must be a 1-D integer array, got shape {clean.shape} and dtype {clean.dtype}"
        )
    if clean.size and (clean.min() < 0 or clean.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], found [{clean.min()}, {clean.max()}]")
    rng = np.random.default_rng(seed)
    n = clean.size
    if exact:
        chosen = np.sort(rng.choice(n, size=round(rate * n), replace=False))
    else:
        chosen = np.flatnonzero(rng.random(n) < rate)
    noisy = clean.copy()
    if noise_type == "symmetric":
        # uniform over the C-1 other classes: shift by 1..C-1
        noisy[chosen] = (clean[chosen] + rng.integers(1, num_classes, size=chosen.size)) % num_classes
    elif noise_type == "uniform":
        noisy[chosen] = rng.integers(0, num_classes, size=chosen.size)
    else:
        noisy[chosen] = (clean[chosen] + 1) % num_classes
    flipped = chosen[noisy[chosen] != clean[chosen]]
    report = LabelNoise(
        noise_type, rate, exact, int(seed), n, int(num_classes), flipped.tolist(), int(chosen.size)
    )
    return noisy, report


def add_label_noise(
    dataset: Any,
    rate: float,
    *,
    noise_type: str = "symmetric",
    seed: int = 0,
    exact: bool = False,
    label_column: str = "label",
    num_classes: int | None = None,
) -> tuple[Any, LabelNoise]:
    """Corrupt the labels of a ``datasets.Dataset``; returns ``(new_dataset, report)``.

    ``num_classes`` defaults to the column's ``ClassLabel`` size, else ``max(label) + 1``. The clean label is kept
    in a ``clean_<label_column>`` column so that noise can be audited.
    """
    if label_column not in dataset.column_names:
        raise ValueError(f"dataset has no label column {label_column!r} (columns: {dataset.column_names})")
    if f"clean_{label_column}" in dataset.column_names:
        raise ValueError(
            f"dataset already has a clean_{label_column} column: its labels are already noisy; corrupt the clean "
            "dataset instead"
        )
    labels = np.asarray(dataset[label_column])
    if num_classes is None:
        feature = dataset.features[label_column]
        num_classes = getattr(feature, "num_classes", None) or int(labels.max()) + 1
    noisy, report = corrupt_labels(labels, num_classes, rate, noise_type=noise_type, seed=seed, exact=exact)
    feature = dataset.features[label_column]
    out = dataset.rename_column(label_column, f"clean_{label_column}")
    out = out.add_column(label_column, noisy.tolist(), feature=feature)
    return out, report
