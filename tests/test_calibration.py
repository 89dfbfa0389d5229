"""Calibration metrics, reliability diagram and temperature scaling, checked against independent computations:

* ECE: a plain-Python loop over the items written here from the definition (top label, 15 equal-width bins
  ``(b/15, (b+1)/15]``, L1), and scikit-learn's ``calibration_curve`` for the bins of the reliability diagram;
* NLL: ``torch.nn.functional.cross_entropy``; Brier score: a loop from Brier's definition;
* temperature: a dense grid of the NLL and SciPy's bounded scalar minimiser.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import hf_squareloss as hsl
from hf_squareloss.calibration import (
    TEMPERATURE_RANGE,
    calibration_metrics,
    cross_fitted_metrics,
    fit_temperature,
    fit_temperature_for,
    reliability_bins,
    reliability_diagram,
    served_calibration_metrics,
)


def _ece_by_definition(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    total = 0.0
    n = len(labels)
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = [i for i in range(n) if (lo < probs[i].max() <= hi) or (b == 0 and probs[i].max() == 0.0)]
        if not members:
            continue
        acc = sum(int(np.argmax(probs[i]) == labels[i]) for i in members) / len(members)
        conf = sum(float(probs[i].max()) for i in members) / len(members)
        total += len(members) / n * abs(acc - conf)
    return total


def _brier_by_definition(probs: np.ndarray, labels: np.ndarray) -> float:
    return sum(
        sum((float(probs[i, c]) - (1.0 if c == labels[i] else 0.0)) ** 2 for c in range(probs.shape[1]))
        for i in range(len(labels))
    ) / len(labels)


def _random_case(n: int = 600, c: int = 5, seed: int = 0, sharpness: float = 3.0):
    g = torch.Generator().manual_seed(seed)
    logits = sharpness * torch.randn(n, c, generator=g, dtype=torch.float64)
    labels = torch.multinomial(torch.softmax(0.6 * logits, -1), 1, generator=g).squeeze(1)
    return logits, labels


@pytest.mark.parametrize("seed,c", [(0, 2), (1, 5), (2, 10)])
def test_metrics_against_the_definitions(seed: int, c: int) -> None:
    logits, labels = _random_case(c=c, seed=seed)
    probs = torch.softmax(logits, -1)
    got = calibration_metrics(probs, labels)
    p, y = probs.numpy(), labels.numpy()
    assert got["ece"] == pytest.approx(_ece_by_definition(p, y), abs=1e-12)
    assert got["ece"] > 0.02  # the labels were drawn from a flatter distribution: overconfident
    assert got["nll"] == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-12)
    assert got["brier"] == pytest.approx(_brier_by_definition(p, y), rel=1e-12)
    assert got["accuracy"] == pytest.approx(float((p.argmax(1) == y).mean()))


def test_ece_by_hand() -> None:
    # confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.55 (right); bins (13/15, 14/15] and (8/15, 9/15]
    probs = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.45, 0.55]])
    labels = torch.tensor([0, 0, 0, 1])
    # |0.5 - 0.9| * 2/4 + |1.0 - 0.575| * 2/4
    assert calibration_metrics(probs, labels)["ece"] == pytest.approx(0.4 * 0.5 + 0.425 * 0.5)
    # a perfectly confident, always right model is perfectly calibrated
    assert calibration_metrics(torch.eye(3), torch.arange(3))["ece"] == 0.0


def test_reliability_bins_match_scikit_learn() -> None:
    from sklearn.calibration import calibration_curve

    logits, labels = _random_case(n=2000, c=4, seed=3)
    probs = torch.softmax(logits, -1)
    conf, pred = probs.max(-1)
    correct = (pred == labels).numpy().astype(int)
    bins = reliability_bins(conf.numpy(), correct, 15)
    prob_true, prob_pred = calibration_curve(correct, conf.numpy(), n_bins=15, strategy="uniform")
    filled = bins["count"] > 0
    np.testing.assert_allclose(bins["accuracy"][filled], prob_true, rtol=1e-12)
    np.testing.assert_allclose(bins["confidence"][filled], prob_pred, rtol=1e-12)
    assert bins["count"].sum() == 2000
    # a confidence exactly on an edge belongs to the bin it closes, as in scikit-learn
    edge = reliability_bins([1 / 3, 0.0, 1.0], [1, 1, 0], 3)
    assert edge["count"].tolist() == [2, 0, 1]


def test_reliability_diagram_png(tmp_path) -> None:
    logits, labels = _random_case(n=300, c=3, seed=4)
    probs = torch.softmax(logits, -1)
    out = reliability_diagram(probs, labels, tmp_path / "r.png", title="test")
    data = (tmp_path / "r.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    assert out["metrics"]["ece"] == pytest.approx(_ece_by_definition(probs.numpy(), labels.numpy()))


def test_bad_inputs_are_refused() -> None:
    probs = torch.full((3, 2), 0.5)
    with pytest.raises(ValueError, match="rows summing to 1"):
        calibration_metrics(torch.ones(3, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        calibration_metrics(probs, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="shape"):
        calibration_metrics(probs, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="no labelled items"):
        calibration_metrics(probs, torch.full((3,), -100))
    with pytest.raises(ValueError, match="NaN"):
        fit_temperature(torch.tensor([[0.0, float("nan")]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        fit_temperature(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature must be"):
        hsl.logits_to_scores(torch.zeros(1, 2), "ce", temperature=0.0)
    # ignore_index items are left out
    full = calibration_metrics(probs[:2], torch.tensor([0, 1]))
    assert calibration_metrics(probs, torch.tensor([0, 1, -100])) == full


# ---- temperature ---------------------------------------------------------------------------------------------
def _nll(z: torch.Tensor, labels: torch.Tensor, t: float) -> float:
    return float(F.cross_entropy(z / t, labels))


@pytest.mark.parametrize("true_t", [0.3, 1.0, 4.0])
def test_fit_temperature_finds_the_minimum(true_t: float) -> None:
    from scipy.optimize import minimize_scalar

    g = torch.Generator().manual_seed(int(10 * true_t))
    z = 2.0 * torch.randn(5000, 6, generator=g, dtype=torch.float64)
    labels = torch.multinomial(torch.softmax(z / true_t, -1), 1, generator=g).squeeze(1)
    fit = fit_temperature(z, labels)
    assert fit.status == "fitted" and fit.num_items == 5000
    ref = minimize_scalar(
        lambda log_t: _nll(z, labels, math.exp(log_t)),
        bounds=(-5, 5),
        method="bounded",
        options={"xatol": 1e-10},
    )
    assert fit.temperature == pytest.approx(math.exp(ref.x), rel=1e-5)
    assert fit.nll == pytest.approx(_nll(z, labels, fit.temperature), rel=1e-12)
    assert fit.nll_at_one == pytest.approx(_nll(z, labels, 1.0), rel=1e-12)
    grid = np.exp(np.linspace(math.log(0.05), math.log(20), 400))
    assert fit.nll <= min(_nll(z, labels, t) for t in grid) + 1e-12
    assert fit.temperature == pytest.approx(true_t, rel=0.1)  # 5,000 draws recover the generating T
    assert fit.iterations < 30


def test_fit_temperature_degenerate_cases() -> None:
    # every item right with a margin: the NLL falls forever as T -> 0; the lower end is returned and said so
    z = 5.0 * torch.eye(4).repeat(10, 1)
    fit = fit_temperature(z, torch.arange(4).repeat(10))
    assert fit.status == "separable" and fit.temperature == TEMPERATURE_RANGE[0]
    assert fit.nll < 1e-12
    # constant rows: the NLL does not depend on T; T = 1 is returned
    fit = fit_temperature(torch.full((5, 3), 2.5), torch.tensor([0, 1, 2, 0, 1]))
    assert fit.status == "constant" and fit.temperature == 1.0
    assert fit.nll == pytest.approx(math.log(3))
    # the true class always scores lowest: the NLL falls as T grows; the upper end is returned
    fit = fit_temperature(1.0 - torch.eye(4), torch.arange(4))
    assert fit.status == "inverted" and fit.temperature == TEMPERATURE_RANGE[1]
    with pytest.raises(ValueError, match="T_min < T_max"):
        fit_temperature(z, torch.arange(4).repeat(10), bounds=(2.0, 1.0))


def test_fit_on_square_loss_logits_divides_by_m() -> None:
    config = hsl.LossConfig.resolve("square", M=15.0)
    logits, labels = _random_case(n=800, c=5, seed=7)
    fit = fit_temperature_for(15.0 * logits, labels, config)
    assert fit.temperature == pytest.approx(fit_temperature(logits, labels).temperature, rel=1e-9)


def test_cross_fitted_metrics_never_score_an_item_with_its_own_fit() -> None:
    logits, labels = _random_case(n=400, c=3, seed=8)
    metrics, fits = cross_fitted_metrics(logits, labels, "ce", folds=2, seed=0)
    order = torch.randperm(400, generator=torch.Generator().manual_seed(0))
    a, b = order.chunk(2)
    t_for_a = fit_temperature(logits[b], labels[b]).temperature
    t_for_b = fit_temperature(logits[a], labels[a]).temperature
    assert [f.temperature for f in fits] == pytest.approx([t_for_a, t_for_b])
    probs = torch.empty_like(logits)
    probs[a] = torch.softmax(logits[a] / t_for_a, -1)
    probs[b] = torch.softmax(logits[b] / t_for_b, -1)
    assert metrics["ece"] == pytest.approx(_ece_by_definition(probs.numpy(), labels.numpy()), abs=1e-12)
    before = served_calibration_metrics(logits, labels, "ce")
    assert metrics["nll"] < before["nll"] and metrics["accuracy"] == before["accuracy"]


# ---- served probabilities ------------------------------------------------------------------------------------
def test_served_probabilities_with_a_temperature() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, 1.0]])
    square = hsl.LossConfig.resolve("square", M=15.0)
    record = {**square.to_dict(), "temperature": 0.05}
    probs = hsl.logits_to_scores(logits, record)
    torch.testing.assert_close(probs, torch.softmax(logits / (15.0 * 0.05), -1))
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    # without a temperature the square loss still gives its scores, the others their softmax
    torch.testing.assert_close(hsl.logits_to_scores(logits, square.to_dict()), logits / 15.0)
    ce = {**hsl.LossConfig.resolve("ce").to_dict(), "temperature": 2.0}
    torch.testing.assert_close(hsl.logits_to_scores(logits, ce), torch.softmax(logits / 2.0, -1))
    torch.testing.assert_close(
        hsl.logits_to_scores(logits, "ce", temperature=2.0), torch.softmax(logits / 2, -1)
    )
    got = served_calibration_metrics(logits, torch.tensor([0, 2]), record)
    ref = F.cross_entropy(logits / 0.75, torch.tensor([0, 2]))
    assert got["nll"] == pytest.approx(float(ref), rel=1e-6)


def test_served_nll_is_exact_where_the_probability_underflows() -> None:
    # p(y) = exp(-2000) is 0 in float64; the NLL of these logits is still logsumexp(z) - z_y, here by hand
    logits = torch.tensor([[0.0, 2000.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0])
    second = math.log(math.e + 2.0) - 1.0
    got = served_calibration_metrics(logits, labels, "ce")
    assert got["nll"] == pytest.approx((2000.0 + math.log1p(2 * math.exp(-2000.0)) + second) / 2, rel=1e-12)
    # the probabilities' own NLL floors p(y) at the smallest normal float64 (about 708 nats)
    floored = hsl.calibration_metrics(torch.softmax(logits, -1), labels)["nll"]
    assert floored == pytest.approx((-math.log(torch.finfo(torch.float64).tiny) + second) / 2, rel=1e-12)


def test_temperature_saved_with_the_model(tmp_path) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
    )
    model = BertForSequenceClassification(config)
    with pytest.raises(ValueError, match="no `hf_squareloss` record"):
        hsl.set_temperature(model, 2.0)
    model.config.hf_squareloss = hsl.LossConfig.resolve("square", num_classes=3).to_dict()
    assert hsl.temperature_of(model) is None
    hsl.set_temperature(model, 0.125)
    model.save_pretrained(tmp_path)
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path)
    assert reloaded.config.hf_squareloss["temperature"] == 0.125 == hsl.temperature_of(reloaded)
    logits = torch.randn(4, 3)
    torch.testing.assert_close(hsl.logits_to_scores(logits, reloaded), torch.softmax(logits / 0.125, -1))
    with pytest.raises(ValueError, match="finite number > 0"):
        hsl.set_temperature(model, float("inf"))
    hsl.set_temperature(model, None)
    assert "temperature" not in model.config.hf_squareloss


def test_trainer_keeps_the_temperature_until_it_trains(tmp_path) -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "scripts"))
    import one_step

    from hf_squareloss import SquareLossTrainer, SquareLossTrainingArguments

    def args(**kw):
        return SquareLossTrainingArguments(
            output_dir=str(tmp_path), report_to=[], use_cpu=True, save_strategy="no", **kw
        )

    model = one_step.tiny_bert()
    model.config.hf_squareloss = {
        **hsl.LossConfig.resolve("square", num_classes=3).to_dict(),
        "temperature": 0.2,
    }
    SquareLossTrainer(model=model, args=args(loss_type="square"))
    assert hsl.temperature_of(model) == 0.2  # same loss: the calibration still holds
    SquareLossTrainer(model=model, args=args(loss_type="ce"))
    assert hsl.temperature_of(model) is None  # another loss: the record is replaced
    model.config.hf_squareloss = {**model.config.hf_squareloss, "temperature": 0.5}
    trainer = SquareLossTrainer(
        model=model,
        args=args(loss_type="ce", max_steps=1, per_device_train_batch_size=4),
        train_dataset=one_step.dataset(),
    )
    assert hsl.temperature_of(model) == 0.5
    trainer.train()
    assert hsl.temperature_of(model) is None  # training changed the model


def test_pipeline_scores_give_the_served_probabilities(shared_model) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    path = shared_model("paraphrase-MiniLM-L3-v2")
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = ["a fine sentence", "a dull one, really"]
    with torch.no_grad():
        logits = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits.double()
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
    for loss, temperature, expected in (
        ("square", None, logits),  # M = 1 for 3 classes: scores are the logits
        ("square", 0.1, torch.softmax(logits / 0.1, -1)),
        ("ce", None, torch.softmax(logits, -1)),
        ("tce", 3.0, torch.softmax(logits / 3.0, -1)),
    ):
        model.config.hf_squareloss = hsl.LossConfig.resolve(loss, num_classes=3).to_dict()
        hsl.set_temperature(model, temperature)
        got = hsl.pipeline_scores(classify, texts)
        assert len(got) == 2
        for row, ref in zip(got, expected, strict=True):
            assert [d["score"] for d in row] == sorted((d["score"] for d in row), reverse=True)
            values = {d["label"]: d["score"] for d in row}
            for i, value in enumerate(ref.tolist()):
                assert values[model.config.id2label[i]] == pytest.approx(value, abs=1e-5)
        single = hsl.pipeline_scores(classify, texts[0])
        assert [d["label"] for d in single] == [d["label"] for d in got[0]]
    with pytest.raises(ValueError, match="sets top_k itself"):
        hsl.pipeline_scores(classify, texts, top_k=1)
