"""Squentropy, GCE, SCE, NCE+RCE and focal against independent formulas in float64: values and gradients.

The references are written from the papers' definitions with Python loops over explicit probability vectors (values)
and with plain differentiable torch operations on an explicit one-hot matrix (gradients), never with the package.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import hf_squareloss as hsl
from hf_squareloss.registry import LossConfig

LOG_1E4 = math.log(1e-4)


# ---------------------------------------------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------------------------------------------
def _softmax(f):
    m = max(f)
    e = [math.exp(v - m) for v in f]
    s = sum(e)
    return [v / s for v in e]


def _rce_public_code(q, y, clamp):
    """-sum_k q_k log(clamp(onehot_k, clamp, 1)), as the SCE / APL public code writes it."""
    return -sum(qk * math.log(max(1.0 if k == y else 0.0, clamp)) for k, qk in enumerate(q))


def reference(name, logits, labels, **kw):
    out = []
    for f, y in zip(logits.double().tolist(), labels.tolist()):
        if y == -100:
            out.append(0.0)
            continue
        q = _softmax(f)
        C = len(f)
        if name == "squentropy":
            value = -math.log(q[y]) + sum(f[i] ** 2 for i in range(C) if i != y) / (C - 1)
        elif name == "gce":
            value = (1.0 - q[y] ** kw["q"]) / kw["q"]
        elif name == "sce":
            clamp = math.exp(kw.get("A", LOG_1E4))
            value = kw["alpha"] * -math.log(q[y]) + kw["beta"] * _rce_public_code(q, y, clamp)
        elif name == "nce_rce":
            clamp = math.exp(kw.get("A", LOG_1E4))
            nce = math.log(q[y]) / sum(math.log(qj) for qj in q)
            value = kw["alpha"] * nce + kw["beta"] * _rce_public_code(q, y, clamp)
        elif name == "focal":
            value = -((1.0 - q[y]) ** kw["gamma"]) * math.log(q[y])
        else:
            raise KeyError(name)
        out.append(value)
    return torch.tensor(out, dtype=torch.float64)


def torch_reference(name, logits, labels, **kw):
    """The same definitions with differentiable torch operations on a one-hot matrix (for reference gradients)."""
    keep = labels != -100
    x, y = logits[keep], labels[keep]
    onehot = F.one_hot(y, x.shape[-1]).to(x.dtype)
    q = torch.exp(x - x.logsumexp(-1, keepdim=True))
    log_q = torch.log(q)
    ce = -(onehot * log_q).sum(-1)
    q_y = (onehot * q).sum(-1)
    A = kw.get("A", LOG_1E4)
    rce = -(q * torch.log(onehot.clamp(math.exp(A), 1.0))).sum(-1)
    if name == "squentropy":
        value = ce + ((1 - onehot) * x * x).sum(-1) / (x.shape[-1] - 1)
    elif name == "gce":
        value = (1 - q_y ** kw["q"]) / kw["q"]
    elif name == "sce":
        value = kw["alpha"] * ce + kw["beta"] * rce
    elif name == "nce_rce":
        value = kw["alpha"] * ce / -log_q.sum(-1) + kw["beta"] * rce
    elif name == "focal":
        value = (1 - q_y) ** kw["gamma"] * ce
    return torch.zeros(labels.shape, dtype=x.dtype).index_put((keep.nonzero().squeeze(-1),), value)


FUNCTIONS = {
    "squentropy": hsl.squentropy,
    "gce": hsl.generalized_cross_entropy,
    "sce": hsl.symmetric_cross_entropy,
    "nce_rce": hsl.nce_rce,
    "focal": hsl.focal_loss,
}
CASES = [
    ("squentropy", {}),
    ("gce", {"q": 0.7}),
    ("gce", {"q": 0.1}),
    ("gce", {"q": 1.0}),
    ("sce", {"alpha": 0.1, "beta": 1.0}),
    ("sce", {"alpha": 6.0, "beta": 0.1, "A": -4.0}),
    ("nce_rce", {"alpha": 1.0, "beta": 1.0}),
    ("nce_rce", {"alpha": 10.0, "beta": 0.1, "A": -4.0}),
    ("nce_rce", {"alpha": 1.0, "beta": 0.0}),
    ("focal", {"gamma": 2.0}),
    ("focal", {"gamma": 0.5}),
    ("focal", {"gamma": 5.0}),
]


def _data(n, c, seed, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, c, generator=g, dtype=torch.float64)
    labels = torch.randint(0, c, (n,), generator=g)
    labels[n // 2] = -100
    return logits, labels


# ---------------------------------------------------------------------------------------------------------------
# values and gradients
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("c", [2, 7, 40, 1000])
@pytest.mark.parametrize("name,kw", CASES)
def test_values_and_gradients_match_the_definitions(name, kw, c):
    logits, labels = _data(8, c, seed=c)
    x = logits.clone().requires_grad_(True)
    ours = FUNCTIONS[name](x, labels, reduction="none", **kw)
    torch.testing.assert_close(ours, reference(name, logits, labels, **kw), rtol=1e-10, atol=1e-12)
    ref_x = logits.clone().requires_grad_(True)
    expected = torch_reference(name, ref_x, labels, **kw)
    torch.testing.assert_close(ours, expected.detach(), rtol=1e-10, atol=1e-12)
    weights = torch.linspace(0.5, 2.0, len(labels), dtype=torch.float64)  # a non-uniform upstream gradient
    (ours * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=1e-9, atol=1e-12)
    assert (x.grad[len(labels) // 2] == 0).all()  # the ignored item


@pytest.mark.parametrize("name,kw", CASES)
def test_float32_matches_float64(name, kw):
    logits, labels = _data(64, 50, seed=5)
    x32 = logits.float().requires_grad_(True)
    x64 = logits.clone().requires_grad_(True)
    FUNCTIONS[name](x32, labels, **kw).backward()
    FUNCTIONS[name](x64, labels, **kw).backward()
    torch.testing.assert_close(
        FUNCTIONS[name](x32.detach(), labels, **kw).double(),
        FUNCTIONS[name](logits, labels, **kw),
        rtol=1e-5,
        atol=1e-6,
    )
    torch.testing.assert_close(x32.grad.double(), x64.grad, rtol=1e-4, atol=1e-7)


def test_squentropy_averages_over_the_other_classes_and_needs_raw_logits():
    logits = torch.tensor([[3.0, 1.0, -2.0]], dtype=torch.float64)
    labels = torch.tensor([0])
    ce = F.cross_entropy(logits, labels)
    torch.testing.assert_close(hsl.squentropy(logits, labels), ce + (1.0 + 4.0) / 2)
    # not shift invariant, unlike cross-entropy: it depends on the raw logits
    torch.testing.assert_close(hsl.squentropy(logits + 2, labels), ce + (3.0**2 + 0.0**2) / 2)
    assert hsl.get_loss_spec("squentropy").outputs == "probabilities"  # its logits are a softmax's
    torch.testing.assert_close(hsl.logits_to_scores(logits, "squentropy"), torch.softmax(logits, -1))


def test_limits_and_special_cases():
    logits, labels = _data(20, 9, seed=1)
    ce = F.cross_entropy(logits, labels, reduction="none")
    q_y = torch.softmax(logits, -1).gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    q_y = torch.where(labels == -100, 1.0, q_y)
    # GCE -> CE as q -> 0; GCE(q = 1) = 1 - q_y
    torch.testing.assert_close(
        hsl.generalized_cross_entropy(logits, labels, q=1e-7, reduction="none"), ce, rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(
        hsl.generalized_cross_entropy(logits, labels, q=1.0, reduction="none"), 1 - q_y
    )
    # focal(gamma = 0) is CE exactly; SCE(alpha = 1, beta = 0) is CE
    assert torch.equal(hsl.focal_loss(logits, labels, gamma=0.0, reduction="none"), ce)
    torch.testing.assert_close(
        hsl.symmetric_cross_entropy(logits, labels, alpha=1.0, beta=0.0, reduction="none"), ce
    )
    # NCE is in [0, 1]; the RCE term is -A (1 - q_y)
    nce = hsl.nce_rce(logits, labels, alpha=1.0, beta=0.0, reduction="none")
    assert ((nce >= 0) & (nce <= 1)).all()
    rce = hsl.nce_rce(logits, labels, alpha=0.0, beta=1.0, reduction="none")
    torch.testing.assert_close(rce, -LOG_1E4 * (1 - q_y))
    # SCE's A: the public code's log(1e-4) by default, the paper's -4 on request
    torch.testing.assert_close(
        hsl.symmetric_cross_entropy(logits, labels, alpha=0.0, beta=1.0, A=-4.0, reduction="none"),
        4.0 * (1 - q_y),
    )


def test_well_fitted_items_keep_their_precision():
    """1 - q_y and 1 - q_y^q come from expm1 of the log-likelihood: tiny losses keep their relative precision."""
    logits = torch.tensor([[20.0, 0.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0])
    nll = math.log1p(2 * math.exp(-20.0))
    gce = (-math.expm1(0.7 * -nll)) / 0.7
    torch.testing.assert_close(
        hsl.generalized_cross_entropy(logits, labels, q=0.7).item(), gce, rtol=1e-6, atol=0
    )
    focal = -math.expm1(-nll) * nll
    torch.testing.assert_close(hsl.focal_loss(logits, labels, gamma=1.0).item(), focal, rtol=1e-6, atol=0)
    logits = logits.float()
    x = logits.clone().requires_grad_(True)
    hsl.focal_loss(x, labels, gamma=0.5).backward()  # derivative of (1 - q_y)^0.5 is infinite at q_y = 1
    assert torch.isfinite(x.grad).all()
    x = torch.tensor([[200.0, 0.0, 0.0]], requires_grad=True)  # q_y == 1 exactly in float32
    hsl.focal_loss(x, labels, gamma=0.5).backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", ["squentropy", "nce_rce"])
def test_fused_losses_allocate_only_the_gradient(name):
    from test_functional import _LargeOutputs

    n, c = 256, 1000
    logits = (2 * torch.randn(n, c)).requires_grad_(True)
    labels = torch.randint(0, c, (n,))
    with _LargeOutputs(n * c * 4) as seen:
        FUNCTIONS[name](logits, labels).backward()
    new = {ptr: op for ptr, op in seen.storages.items() if ptr != logits.untyped_storage().data_ptr()}
    # the gradient, and at most torch.logsumexp's transient buffer in the forward pass
    assert logits.grad.untyped_storage().data_ptr() in new and len(new) <= 2, new


@pytest.mark.parametrize("name", ["squentropy", "nce_rce"])
def test_fused_losses_impossible_class_has_a_finite_gradient(name):
    logits = torch.randn(4, 5, dtype=torch.float64)
    logits[1, 3] = -float("inf")
    labels = torch.tensor([0, 1, 2, 3])
    labels[1] = 0
    x = logits.clone().requires_grad_(True)
    if name == "squentropy":
        with pytest.raises(ValueError, match="non-finite"):  # a square term on the logits: -inf is no logit
            FUNCTIONS[name](x, labels)
        return
    FUNCTIONS[name](x, labels).backward()
    assert torch.isfinite(x.grad).all()


# ---------------------------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 5),
    c=st.integers(2, 8),
    scale=st.floats(0.01, 15.0),
    q=st.floats(0.01, 1.0),
    gamma=st.floats(0.0, 5.0),
    seed=st.integers(0, 2**16),
)
def test_properties(n, c, scale, q, gamma, seed):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, c, generator=g, dtype=torch.float64)
    labels = torch.randint(0, c, (n,), generator=g)
    ce = F.cross_entropy(logits, labels, reduction="none")
    sq = hsl.squentropy(logits, labels, reduction="none")
    assert (sq >= ce - 1e-12).all()
    gce = hsl.generalized_cross_entropy(logits, labels, q=q, reduction="none")
    assert ((gce >= 0) & (gce <= ce + 1e-9) & (gce <= 1 / q + 1e-9)).all()
    torch.testing.assert_close(gce, reference("gce", logits, labels, q=q), rtol=1e-8, atol=1e-10)
    focal = hsl.focal_loss(logits, labels, gamma=gamma, reduction="none")
    assert ((focal >= 0) & (focal <= ce + 1e-9)).all()
    torch.testing.assert_close(focal, reference("focal", logits, labels, gamma=gamma), rtol=1e-8, atol=1e-10)
    nce = hsl.nce_rce(logits, labels, alpha=1.0, beta=0.0, reduction="none")
    assert ((nce >= -1e-12) & (nce <= 1 + 1e-12)).all()
    shift = torch.randn(n, 1, generator=g, dtype=torch.float64) * 5  # softmax losses are shift invariant
    for name, kw in (("gce", {"q": q}), ("focal", {"gamma": gamma}), ("sce", {}), ("nce_rce", {})):
        fn = FUNCTIONS[name]
        torch.testing.assert_close(
            fn(logits + shift, labels, reduction="none", **kw), fn(logits, labels, reduction="none", **kw)
        )


# ---------------------------------------------------------------------------------------------------------------
# wrappers, registry, bad input
# ---------------------------------------------------------------------------------------------------------------
def test_modules_wrap_functional():
    logits, labels = _data(6, 4, seed=2)
    pairs = [
        (hsl.SquentropyLoss(), hsl.squentropy(logits, labels)),
        (hsl.GeneralizedCrossEntropyLoss(q=0.3), hsl.generalized_cross_entropy(logits, labels, q=0.3)),
        (
            hsl.SymmetricCrossEntropyLoss(alpha=1, beta=2, A=-4),
            hsl.symmetric_cross_entropy(logits, labels, alpha=1, beta=2, A=-4),
        ),
        (hsl.NCERCELoss(alpha=2, beta=3), hsl.nce_rce(logits, labels, alpha=2, beta=3)),
        (hsl.FocalLoss(gamma=1, reduction="sum"), hsl.focal_loss(logits, labels, gamma=1, reduction="sum")),
    ]
    for module, expected in pairs:
        torch.testing.assert_close(module(logits, labels), expected)
    assert "q=0.3" in repr(hsl.GeneralizedCrossEntropyLoss(q=0.3))
    with pytest.raises(ValueError, match="q must be"):
        hsl.GeneralizedCrossEntropyLoss(q=0)
    with pytest.raises(ValueError, match="both 0"):
        hsl.NCERCELoss(alpha=0, beta=0)


@pytest.mark.parametrize("name,kw", CASES)
def test_registry_calls_the_same_function(name, kw):
    logits, labels = _data(6, 5, seed=3)
    config = LossConfig.resolve(name, **kw)
    torch.testing.assert_close(
        config(logits, labels, reduction="sum"), FUNCTIONS[name](logits, labels, reduction="sum", **kw)
    )


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda x, y: hsl.generalized_cross_entropy(x, y, q=0.0), r"q must be a finite number in \(0, 1\]"),
        (lambda x, y: hsl.generalized_cross_entropy(x, y, q=1.5), r"q must be"),
        (lambda x, y: hsl.symmetric_cross_entropy(x, y, A=0.0), "A must be a finite number < 0"),
        (lambda x, y: hsl.symmetric_cross_entropy(x, y, alpha=-1.0), "alpha must be"),
        (lambda x, y: hsl.nce_rce(x, y, alpha=0.0, beta=0.0), "both 0"),
        (lambda x, y: hsl.nce_rce(x, y, beta=float("nan")), "beta must be a finite number"),
        (lambda x, y: hsl.focal_loss(x, y, gamma=-0.5), "gamma must be"),
        (lambda x, y: hsl.focal_loss(x, y, gamma="two"), "gamma must be"),
    ],
)
def test_bad_hyper_parameters(call, match):
    with pytest.raises(ValueError, match=match):
        call(torch.randn(4, 3), torch.tensor([0, 1, 2, 1]))


# ---------------------------------------------------------------------------------------------------------------
# through the Trainer, on real model heads
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["sequence", "token", "multiple_choice"])
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_trainer_heads_use_the_new_losses(tmp_path, head, name):
    from test_trainer import _args, _heads

    from hf_squareloss import SquareLossTrainer, SquareLossTrainingArguments

    model, inputs, labels, num_classes = _heads()[head]
    model.eval()
    trainer = SquareLossTrainer(
        model=model, args=SquareLossTrainingArguments(**_args(tmp_path, loss_type=name))
    )
    with torch.no_grad():
        loss = trainer.compute_loss(model, {**inputs, "labels": labels}, num_items_in_batch=torch.tensor(5))
        logits = model(**inputs).logits
    defaults = LossConfig.resolve(name).params
    flat_logits, flat_labels = logits.reshape(-1, num_classes), labels.reshape(-1)
    expected = reference(name, flat_logits, flat_labels, **defaults).sum() / 5
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    assert model.config.hf_squareloss["loss_type"] == name
