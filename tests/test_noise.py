"""Label noise: rates counted, determinism, the two noise types, validation, and datasets.Dataset support."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_squareloss.noise import LabelNoise, add_label_noise, corrupt_labels, true_label_stays_most_likely


def _labels(n: int, num_classes: int, seed: int = 123) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_classes, size=n)


# ---- exact counts -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "rate"), [(1000, 0.4), (3668, 0.4), (999, 0.25), (10, 0.0), (10, 1.0), (7, 0.5)]
)
@pytest.mark.parametrize("noise_type", ["symmetric", "pair"])
def test_exact_flips_round_of_rate_times_n(n: int, rate: float, noise_type: str) -> None:
    clean = _labels(n, 3)
    noisy, report = corrupt_labels(clean, 3, rate, noise_type=noise_type, seed=5, exact=True)
    changed = np.flatnonzero(noisy != clean)
    assert len(changed) == round(rate * n)
    assert changed.tolist() == report.flipped_indices
    assert report.num_flipped == len(changed)
    assert report.realised_rate == pytest.approx(len(changed) / n)


def test_bernoulli_rate_is_within_binomial_bounds() -> None:
    n, rate = 20_000, 0.4
    clean = _labels(n, 2)
    noisy, report = corrupt_labels(clean, 2, rate, seed=11)
    flipped = int((noisy != clean).sum())
    sd = math.sqrt(n * rate * (1 - rate))
    assert abs(flipped - n * rate) < 5 * sd  # 5 sigma: a wrong rate (e.g. 0.2 or 0.5) lies > 40 sigma away
    assert report.realised_rate == flipped / n


def test_flipped_labels_always_change() -> None:
    clean = _labels(5000, 4)
    noisy, report = corrupt_labels(clean, 4, 0.6, seed=3)
    idx = np.asarray(report.flipped_indices)
    assert np.all(noisy[idx] != clean[idx])
    untouched = np.setdiff1d(np.arange(clean.size), idx)
    assert np.array_equal(noisy[untouched], clean[untouched])


def test_symmetric_noise_is_uniform_over_other_classes() -> None:
    num_classes, n = 5, 50_000
    clean = np.full(n, 2)
    noisy, report = corrupt_labels(clean, num_classes, 0.5, seed=0)
    targets = noisy[report.flipped_indices]
    counts = np.bincount(targets, minlength=num_classes)
    assert counts[2] == 0
    others = counts[[0, 1, 3, 4]]
    expected = len(targets) / 4
    chi2 = float(((others - expected) ** 2 / expected).sum())
    assert chi2 < 16.27  # chi-square, 3 degrees of freedom, p = 0.001


def test_pair_noise_maps_i_to_i_plus_one_mod_c() -> None:
    num_classes = 4
    clean = np.arange(4000) % num_classes
    noisy, report = corrupt_labels(clean, num_classes, 0.3, noise_type="pair", seed=9)
    idx = np.asarray(report.flipped_indices)
    assert np.array_equal(noisy[idx], (clean[idx] + 1) % num_classes)
    assert set(np.unique(clean[idx])) == {0, 1, 2, 3}  # the last class wraps to 0


def test_binary_noise_flips_the_label() -> None:
    clean = _labels(100, 2)
    for noise_type in ("symmetric", "pair"):
        noisy, report = corrupt_labels(clean, 2, 0.5, noise_type=noise_type, seed=1, exact=True)
        idx = report.flipped_indices
        assert np.array_equal(noisy[idx], 1 - clean[idx])


# ---- determinism and independence ---------------------------------------------------------------------------
def test_same_seed_same_noise_other_seed_other_noise() -> None:
    clean = _labels(2000, 3)
    a, ra = corrupt_labels(clean, 3, 0.4, seed=7)
    b, rb = corrupt_labels(clean, 3, 0.4, seed=7)
    c, _ = corrupt_labels(clean, 3, 0.4, seed=8)
    assert np.array_equal(a, b) and ra.flipped_indices == rb.flipped_indices
    assert not np.array_equal(a, c)


def test_noise_ignores_global_random_states() -> None:
    """The noise seed is independent of the model seed (numpy's and torch's global generators)."""
    clean = _labels(500, 3)
    np.random.seed(0)
    torch.manual_seed(0)
    a, _ = corrupt_labels(clean, 3, 0.4, seed=1)
    np.random.seed(12345)
    torch.manual_seed(999)
    np.random.rand(10)
    b, _ = corrupt_labels(clean, 3, 0.4, seed=1)
    assert np.array_equal(a, b)


def test_input_is_not_modified() -> None:
    clean = _labels(300, 3)
    copy = clean.copy()
    corrupt_labels(clean, 3, 0.9, seed=0)
    assert np.array_equal(clean, copy)


def test_zero_rate_changes_nothing() -> None:
    clean = _labels(300, 3)
    noisy, report = corrupt_labels(clean, 3, 0.0, seed=0)
    assert np.array_equal(noisy, clean) and report.num_flipped == 0 and report.realised_rate == 0.0


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 400),
    num_classes=st.integers(2, 12),
    rate=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31),
    noise_type=st.sampled_from(["symmetric", "pair"]),
    exact=st.booleans(),
)
def test_properties(n: int, num_classes: int, rate: float, seed: int, noise_type: str, exact: bool) -> None:
    clean = np.random.default_rng(seed).integers(0, num_classes, size=n)
    noisy, report = corrupt_labels(clean, num_classes, rate, noise_type=noise_type, seed=seed, exact=exact)
    assert noisy.shape == clean.shape and noisy.min() >= 0 and noisy.max() < num_classes
    assert np.flatnonzero(noisy != clean).tolist() == report.flipped_indices
    if exact:
        assert report.num_flipped == round(rate * n)


# ---- validation -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), float("inf")])
def test_bad_rate(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        corrupt_labels([0, 1], 2, rate)


def test_bad_noise_type_classes_and_labels() -> None:
    with pytest.raises(ValueError, match="noise type"):
        corrupt_labels([0, 1], 2, 0.1, noise_type="asymmetric")
    with pytest.raises(ValueError, match="at least 2 classes"):
        corrupt_labels([0, 0], 1, 0.1)
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        corrupt_labels([0, 2], 2, 0.1)
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        corrupt_labels([-1, 0], 2, 0.1)
    with pytest.raises(ValueError, match="1-D integer"):
        corrupt_labels([0.0, 1.0], 2, 0.1)
    with pytest.raises(ValueError, match="1-D integer"):
        corrupt_labels([[0, 1]], 2, 0.1)


def test_report_serialises() -> None:
    _, report = corrupt_labels(_labels(50, 2), 2, 0.2, seed=4, exact=True)
    data = report.to_dict()
    assert data["num_flipped"] == 10 and data["realised_rate"] == 0.2 and len(data["flipped_indices"]) == 10
    assert "flipped_indices" not in report.to_dict(with_indices=False)
    assert isinstance(report, LabelNoise)


# ---- datasets.Dataset ---------------------------------------------------------------------------------------
def test_add_label_noise_on_a_dataset_keeps_clean_labels_and_features() -> None:
    import datasets

    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["a", "b", "c"])}
    )
    labels = _labels(600, 3).tolist()
    ds = datasets.Dataset.from_dict(
        {"text": [str(i) for i in range(600)], "label": labels}, features=features
    )
    noisy_ds, report = add_label_noise(ds, 0.3, seed=2, exact=True)
    assert report.num_classes == 3  # from the ClassLabel
    assert noisy_ds.features["label"] == features["label"]
    assert noisy_ds["clean_label"] == labels
    changed = [i for i, (a, b) in enumerate(zip(noisy_ds["label"], labels, strict=True)) if a != b]
    assert changed == report.flipped_indices and len(changed) == 180
    assert ds["label"] == labels  # the input dataset is untouched
    with pytest.raises(ValueError, match="already"):
        add_label_noise(noisy_ds, 0.1)
    with pytest.raises(ValueError, match="no label column"):
        add_label_noise(ds, 0.1, label_column="target")


# ---- uniform noise (the TCE paper's): redrawn from all classes -------------------------------------------------
def test_uniform_noise_redraws_from_all_classes_and_flips_eta_c_minus_1_over_c() -> None:
    num_classes, n, rate = 4, 40_000, 0.6
    clean = np.full(n, 1)
    noisy, report = corrupt_labels(clean, num_classes, rate, noise_type="uniform", seed=7)
    # a redrawn label is any of the 4 classes with probability 1/4, its own included
    sd_replaced = math.sqrt(n * rate * (1 - rate))
    assert abs(report.num_replaced - n * rate) < 5 * sd_replaced
    flip = rate * (num_classes - 1) / num_classes
    assert report.expected_flip_rate == pytest.approx(0.45)
    assert abs(int((noisy != clean).sum()) - n * flip) < 5 * math.sqrt(n * flip * (1 - flip))
    counts = np.bincount(noisy, minlength=num_classes)
    kept_by_chance = counts[1] - (n - report.num_replaced)  # redrawn labels that fell on the clean class
    per_class = report.num_replaced / num_classes
    sd = math.sqrt(report.num_replaced * 0.25 * 0.75)
    for value in (counts[0], counts[2], counts[3], kept_by_chance):
        assert abs(value - per_class) < 5 * sd
    assert np.flatnonzero(noisy != clean).tolist() == report.flipped_indices
    assert report.realised_rate == pytest.approx(len(report.flipped_indices) / n)


def test_uniform_noise_exact_redraws_round_of_rate_times_n() -> None:
    clean = _labels(1000, 10)
    noisy, report = corrupt_labels(clean, 10, 0.8, noise_type="uniform", seed=1, exact=True)
    assert report.num_replaced == 800
    assert report.num_flipped == int((noisy != clean).sum()) < 800
    data = report.to_dict(with_indices=False)
    assert data["num_replaced"] == 800 and data["expected_flip_rate"] == pytest.approx(0.72)
    again, _ = corrupt_labels(clean, 10, 0.8, noise_type="uniform", seed=1, exact=True)
    assert np.array_equal(again, noisy)


def test_symmetric_and_pair_replace_exactly_what_they_flip() -> None:
    clean = _labels(500, 3)
    for noise_type in ("symmetric", "pair"):
        _, report = corrupt_labels(clean, 3, 0.3, noise_type=noise_type, seed=2)
        assert report.num_replaced == report.num_flipped and report.expected_flip_rate == 0.3


@pytest.mark.parametrize(
    ("noise_type", "num_classes", "rate"),
    [
        ("symmetric", 2, 0.4),
        ("symmetric", 2, 0.6),
        ("symmetric", 2, 0.8),
        ("symmetric", 10, 0.8),
        ("symmetric", 10, 0.95),
        ("pair", 10, 0.4),
        ("pair", 10, 0.6),
        ("uniform", 2, 0.8),
        ("uniform", 10, 0.99),
    ],
)
def test_true_label_stays_most_likely_matches_the_observed_label_counts(
    noise_type: str, num_classes: int, rate: float
) -> None:
    """Counted, not derived: corrupt many copies of class 0 and see which label is seen most."""
    labels = np.zeros(200_000, dtype=np.int64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        noisy, report = corrupt_labels(labels, num_classes, rate, noise_type=noise_type, seed=3)
    counts = np.bincount(noisy, minlength=num_classes)
    observed = bool(counts[0] > counts[1:].max())
    assert true_label_stays_most_likely(rate, noise_type, num_classes) is observed
    assert report.true_label_most_likely is observed
    assert report.to_dict()["true_label_most_likely"] is observed
    permuting = [w for w in caught if "more likely than the true one" in str(w.message)]
    assert len(permuting) == (0 if observed else 1)


def test_true_label_stays_most_likely_at_the_boundary_and_on_bad_input() -> None:
    assert true_label_stays_most_likely(0.5, "symmetric", 2) is False  # a tie is not "most likely"
    assert true_label_stays_most_likely(0.9, "symmetric", 10) is False
    assert true_label_stays_most_likely(0.89, "symmetric", 10) is True
    assert true_label_stays_most_likely(0.5, "pair", 3) is False
    assert true_label_stays_most_likely(1.0, "uniform", 3) is False
    with pytest.raises(ValueError, match="rate"):
        true_label_stays_most_likely(1.5, "symmetric", 2)
