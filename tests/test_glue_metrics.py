"""GLUE metrics against their definitions, computed here by hand; both through evaluate.load and the class."""

from __future__ import annotations

import math

import evaluate
import numpy as np
import pytest

from hf_squareloss.glue import metrics
from hf_squareloss.glue.metrics import Glue, glue_scores


def _f1_positive(refs: list[int], preds: list[int]) -> float:
    tp = sum(1 for r, p in zip(refs, preds, strict=True) if r == 1 and p == 1)
    fp = sum(1 for r, p in zip(refs, preds, strict=True) if r == 0 and p == 1)
    fn = sum(1 for r, p in zip(refs, preds, strict=True) if r == 1 and p == 0)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _matthews(refs: list[int], preds: list[int]) -> float:
    tp = sum(1 for r, p in zip(refs, preds, strict=True) if r == 1 and p == 1)
    tn = sum(1 for r, p in zip(refs, preds, strict=True) if r == 0 and p == 0)
    fp = sum(1 for r, p in zip(refs, preds, strict=True) if r == 0 and p == 1)
    fn = sum(1 for r, p in zip(refs, preds, strict=True) if r == 1 and p == 0)
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denominator if denominator else 0.0


def _pearson(x: list[float], y: list[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))


def _ranks(values: list[float]) -> list[float]:
    """Average ranks (ties share the mean of their positions), 1-based."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


@pytest.fixture(scope="module")
def loaded() -> dict[str, evaluate.EvaluationModule]:
    """The module through evaluate's own loader (a local path: no Hub)."""
    return {
        name: evaluate.load(metrics.__file__, name)
        for name in ("mrpc", "qqp", "cola", "stsb", "sst2", "qnli")
    }


@pytest.mark.parametrize("seed", range(5))
def test_accuracy_and_f1_of_the_positive_class(loaded, seed: int) -> None:
    rng = np.random.default_rng(seed)
    refs = rng.integers(0, 2, 300).tolist()
    preds = rng.integers(0, 2, 300).tolist()
    expected_acc = sum(r == p for r, p in zip(refs, preds, strict=True)) / 300
    for name in ("mrpc", "qqp"):
        out = loaded[name].compute(predictions=preds, references=refs)
        assert set(out) == {"accuracy", "f1"}
        assert out["accuracy"] == pytest.approx(expected_acc, abs=1e-12)
        assert out["f1"] == pytest.approx(_f1_positive(refs, preds), abs=1e-12)
    for name in ("sst2", "qnli"):
        assert loaded[name].compute(predictions=preds, references=refs) == {
            "accuracy": pytest.approx(expected_acc)
        }


def test_f1_is_of_class_one_not_macro() -> None:
    refs = [1, 1, 1, 0, 0, 0, 0, 0]
    preds = [1, 0, 0, 0, 0, 0, 0, 1]
    # positive class: tp=1, fp=1, fn=2 -> F1 = 2/5; the macro average would be (0.4 + 0.8) / 2 = 0.6
    assert glue_scores("mrpc", preds, refs)["f1"] == pytest.approx(0.4)
    assert glue_scores("mrpc", [0] * 8, refs)["f1"] == 0.0  # nothing predicted positive


@pytest.mark.parametrize("seed", range(5))
def test_matthews_correlation(loaded, seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    refs = rng.integers(0, 2, 200).tolist()
    preds = [r if rng.random() < 0.7 else 1 - r for r in refs]
    out = loaded["cola"].compute(predictions=preds, references=refs)
    assert out == {"matthews_correlation": pytest.approx(_matthews(refs, preds), abs=1e-12)}
    assert glue_scores("cola", [1] * 10, [0, 1] * 5)["matthews_correlation"] == 0.0


def test_pearson_and_spearman_with_ties(loaded) -> None:
    rng = np.random.default_rng(7)
    refs = np.round(rng.uniform(0, 5, 150), 1).tolist()  # rounding makes ties
    preds = [r + float(rng.normal(0, 1)) for r in refs]
    preds[:10] = [2.5] * 10
    out = loaded["stsb"].compute(predictions=preds, references=refs)
    assert out["pearson"] == pytest.approx(_pearson(preds, refs), abs=1e-8)  # summation order differs
    assert out["spearmanr"] == pytest.approx(_pearson(_ranks(preds), _ranks(refs)), abs=1e-8)


def test_class_and_loader_agree_and_validate() -> None:
    direct = Glue(config_name="mrpc", keep_in_memory=True)
    assert direct.compute(predictions=[1, 0, 1], references=[1, 1, 1]) == {
        "accuracy": pytest.approx(2 / 3),
        "f1": pytest.approx(0.8),
    }
    with pytest.raises(KeyError, match="unknown GLUE configuration"):
        Glue(config_name="squad")
    with pytest.raises(ValueError, match="equal length"):
        glue_scores("sst2", [1, 0], [1])
    with pytest.raises(ValueError, match="no predictions"):
        glue_scores("sst2", [], [])
