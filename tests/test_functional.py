"""The functional losses against independent reference formulas, autograd and finite differences."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import hf_squareloss as hsl

LOSS_FUNCTIONS = {
    "ce": hsl.cross_entropy,
    "square": hsl.square_loss,
    "tce": hsl.tamed_cross_entropy,
    "softmax_mse": hsl.softmax_mse,
    "softmax_mae": hsl.softmax_mae,
    "squentropy": hsl.squentropy,
    "gce": hsl.generalized_cross_entropy,
    "sce": hsl.symmetric_cross_entropy,
    "nce_rce": hsl.nce_rce,
    "focal": hsl.focal_loss,
}


# ---------------------------------------------------------------------------------------------------------------
# reference implementations: plain loops and explicit one-hot vectors, in float64
# ---------------------------------------------------------------------------------------------------------------
def ref_square(logits, labels, k, M, ignore_index=-100):
    out = []
    for f, y in zip(logits.double().tolist(), labels.tolist()):
        if y == ignore_index:
            out.append(0.0)
            continue
        C = len(f)
        total = k * (f[y] - M) ** 2 + sum(f[i] ** 2 for i in range(C) if i != y)
        out.append(total / C)
    return torch.tensor(out, dtype=torch.float64)


def ref_log_softmax_y(f, y):
    m = max(f)
    return f[y] - (m + math.log(sum(math.exp(v - m) for v in f)))


def ref_tce(logits, labels, alpha, ignore_index=-100):
    out = []
    for f, y in zip(logits.double().tolist(), labels.tolist()):
        if y == ignore_index:
            out.append(0.0)
            continue
        t = 1.0 - ref_log_softmax_y(f, y)
        out.append(math.log(t) if alpha == 1 else (t ** (1 - alpha) - 1) / (1 - alpha))
    return torch.tensor(out, dtype=torch.float64)


def ref_ce(logits, labels, ignore_index=-100):
    return torch.tensor(
        [
            0.0 if y == ignore_index else -ref_log_softmax_y(f, y)
            for f, y in zip(logits.double().tolist(), labels.tolist())
        ],
        dtype=torch.float64,
    )


def _softmax_list(f):
    m = max(f)
    e = [math.exp(v - m) for v in f]
    s = sum(e)
    return [v / s for v in e]


def ref_softmax_err(logits, labels, power, ignore_index=-100):
    out = []
    for f, y in zip(logits.double().tolist(), labels.tolist()):
        if y == ignore_index:
            out.append(0.0)
            continue
        q = _softmax_list(f)
        onehot = [1.0 if i == y else 0.0 for i in range(len(f))]
        out.append(sum(abs(a - b) ** power for a, b in zip(q, onehot)))
    return torch.tensor(out, dtype=torch.float64)


def _data(n=12, c=7, seed=0, ignore=True, scale=2.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(n, c, generator=g)).to(dtype)
    labels = torch.randint(0, c, (n,), generator=g)
    if ignore:
        labels[1] = -100
        labels[n // 2] = -100
    return logits, labels


# ---------------------------------------------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k,M", [(1.0, 1.0), (1.0, 15.0), (15.0, 30.0), (0.3, 2.5)])
def test_square_loss_matches_formula(k, M):
    logits, labels = _data()
    expected = ref_square(logits, labels, k, M)
    got = hsl.square_loss(logits, labels, k=k, M=M, reduction="none")
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    n_valid = (labels != -100).sum()
    torch.testing.assert_close(hsl.square_loss(logits, labels, k=k, M=M, reduction="sum"), expected.sum())
    torch.testing.assert_close(hsl.square_loss(logits, labels, k=k, M=M), expected.sum() / n_valid)


def test_square_loss_is_on_raw_logits_not_softmax():
    # adding a constant to every logit leaves any softmax loss unchanged but not the square loss
    logits, labels = _data(ignore=False)
    shifted = logits + 3.0
    assert not torch.allclose(hsl.square_loss(logits, labels), hsl.square_loss(shifted, labels))
    torch.testing.assert_close(
        hsl.tamed_cross_entropy(logits, labels), hsl.tamed_cross_entropy(shifted, labels)
    )


def test_square_loss_is_zero_at_its_target():
    labels = torch.tensor([0, 3, 2])
    logits = torch.zeros(3, 4, dtype=torch.float64)
    logits[torch.arange(3), labels] = 15.0
    assert hsl.square_loss(logits, labels, k=1, M=15, reduction="sum").item() == 0.0


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.999, 1.0, 1.5, 2.0, 4.0])
def test_tce_matches_formula(alpha):
    logits, labels = _data()
    expected = ref_tce(logits, labels, alpha)
    torch.testing.assert_close(
        hsl.tamed_cross_entropy(logits, labels, alpha=alpha, reduction="none"),
        expected,
        rtol=1e-10,
        atol=1e-12,
    )
    n_valid = (labels != -100).sum()
    torch.testing.assert_close(hsl.tamed_cross_entropy(logits, labels, alpha=alpha), expected.sum() / n_valid)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tce_alpha_zero_is_exactly_cross_entropy(reduction, dtype):
    logits, labels = _data(n=64, c=11, dtype=dtype)
    ours = hsl.tamed_cross_entropy(logits, labels, alpha=0.0, reduction=reduction)
    theirs = F.cross_entropy(logits, labels, reduction=reduction)
    assert torch.equal(ours, theirs)
    assert torch.equal(hsl.cross_entropy(logits, labels, reduction=reduction), theirs)


def test_cross_entropy_label_smoothing_matches_torch():
    logits, labels = _data(n=32, c=5, dtype=torch.float32)
    for reduction in ("none", "sum", "mean"):
        ours = hsl.cross_entropy(logits, labels, label_smoothing=0.1, reduction=reduction)
        assert torch.equal(ours, F.cross_entropy(logits, labels, label_smoothing=0.1, reduction=reduction))


def test_tce_is_continuous_in_alpha_around_one():
    logits, labels = _data(scale=6.0)  # some large -log q
    at_one = hsl.tamed_cross_entropy(logits, labels, alpha=1.0, reduction="none")
    for eps in (1e-3, 1e-6, 1e-9, 1e-12):
        for alpha in (1 - eps, 1 + eps):
            near = hsl.tamed_cross_entropy(logits, labels, alpha=alpha, reduction="none")
            # |d loss / d alpha| <= log(t)^2 / 2 * ... : the difference must shrink linearly with eps
            bound = eps * (torch.log1p(ref_ce(logits, labels)) ** 2).max().item() + 1e-15
            assert (near - at_one).abs().max().item() <= bound


def test_tce_gradient_is_ce_gradient_times_t_to_minus_alpha():
    logits, labels = _data(ignore=False)
    for alpha in (0.5, 1.0, 1.5, 3.0):
        x = logits.clone().requires_grad_(True)
        hsl.tamed_cross_entropy(x, labels, alpha=alpha, reduction="sum").backward()
        q = torch.softmax(logits, -1)
        ce_grad = q - F.one_hot(labels, logits.shape[-1]).double()
        t = 1.0 - torch.log_softmax(logits, -1).gather(-1, labels[:, None])
        torch.testing.assert_close(x.grad, ce_grad * t ** (-alpha))


def test_tce_is_smaller_than_ce_and_decreasing_in_alpha():
    logits, labels = _data(ignore=False, scale=5.0)
    values = [
        hsl.tamed_cross_entropy(logits, labels, alpha=a, reduction="none") for a in (0.0, 0.5, 1.0, 1.5, 3.0)
    ]
    for a, b in zip(values, values[1:]):
        assert (b <= a + 1e-12).all()


@pytest.mark.parametrize("power,fn", [(2, hsl.softmax_mse), (1, hsl.softmax_mae)])
def test_softmax_baselines_match_formula(power, fn):
    logits, labels = _data()
    expected = ref_softmax_err(logits, labels, power)
    torch.testing.assert_close(fn(logits, labels, reduction="none"), expected, rtol=1e-10, atol=1e-12)
    n_valid = (labels != -100).sum()
    torch.testing.assert_close(fn(logits, labels), expected.sum() / n_valid)


def test_ce_matches_formula():
    logits, labels = _data()
    torch.testing.assert_close(hsl.cross_entropy(logits, labels, reduction="none"), ref_ce(logits, labels))


# ---------------------------------------------------------------------------------------------------------------
# shapes, reductions, ignore_index
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(LOSS_FUNCTIONS))
def test_any_leading_shape_and_reductions(name):
    fn = LOSS_FUNCTIONS[name]
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 4, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 6, (2, 3, 4), generator=g)
    labels[0, 1, 2] = -100
    none = fn(logits, labels, reduction="none")
    assert none.shape == labels.shape
    assert none[0, 1, 2].item() == 0.0
    flat = fn(logits.reshape(-1, 6), labels.reshape(-1), reduction="none")
    torch.testing.assert_close(none.reshape(-1), flat)
    torch.testing.assert_close(fn(logits, labels, reduction="sum"), flat.sum())
    torch.testing.assert_close(fn(logits, labels, reduction="mean"), flat.sum() / 23)


@pytest.mark.parametrize("name", list(LOSS_FUNCTIONS))
def test_custom_ignore_index_and_ignored_rows_have_no_gradient(name):
    fn = LOSS_FUNCTIONS[name]
    logits, labels = _data(ignore=False)
    labels[labels == 3] = 0
    labels[[2, 5]] = 3
    x = logits.clone().requires_grad_(True)
    fn(x, labels, ignore_index=3, reduction="sum").backward()
    assert (x.grad[[2, 5]] == 0).all()
    assert (x.grad[0] != 0).any()
    kept = labels != 3
    torch.testing.assert_close(
        fn(logits, labels, ignore_index=3, reduction="sum"), fn(logits[kept], labels[kept], reduction="sum")
    )


@pytest.mark.parametrize("name", list(LOSS_FUNCTIONS))
def test_all_ignored(name):
    fn = LOSS_FUNCTIONS[name]
    logits = torch.randn(3, 4, requires_grad=True)
    labels = torch.full((3,), -100)
    assert fn(logits, labels, reduction="sum").item() == 0.0
    assert math.isnan(fn(logits, labels, reduction="mean").item())  # as torch's cross_entropy
    fn(logits, labels, reduction="sum").backward()
    assert (logits.grad == 0).all()


# ---------------------------------------------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("square", {"k": 1.0, "M": 1.0}),
        ("square", {"k": 15.0, "M": 30.0}),
        ("square", {"k": 0.5, "M": 3.0}),
        ("tce", {"alpha": 0.0}),
        ("tce", {"alpha": 0.7}),
        ("tce", {"alpha": 1.0}),
        ("tce", {"alpha": 1.5}),
        ("ce", {"label_smoothing": 0.1}),
        ("softmax_mse", {}),
        ("softmax_mae", {}),
        ("squentropy", {}),
        ("gce", {"q": 0.7}),
        ("gce", {"q": 0.05}),
        ("gce", {"q": 1.0}),
        ("sce", {"alpha": 0.1, "beta": 1.0}),
        ("sce", {"alpha": 1.0, "beta": 0.5, "A": -4.0}),
        ("nce_rce", {"alpha": 1.0, "beta": 1.0}),
        ("nce_rce", {"alpha": 10.0, "beta": 0.1, "A": -2.0}),
        ("focal", {"gamma": 0.0}),
        ("focal", {"gamma": 0.5}),
        ("focal", {"gamma": 2.0}),
    ],
)
def test_gradcheck(name, kwargs, reduction):
    logits, labels = _data(n=6, c=5)
    x = logits.clone().requires_grad_(True)
    fn = LOSS_FUNCTIONS[name]
    assert torch.autograd.gradcheck(lambda z: fn(z, labels, reduction=reduction, **kwargs), (x,))
    assert torch.autograd.gradgradcheck(lambda z: fn(z, labels, reduction=reduction, **kwargs), (x,))


def test_square_gradient_closed_form():
    logits, labels = _data(ignore=False)
    k, M = 2.0, 5.0
    x = logits.clone().requires_grad_(True)
    hsl.square_loss(x, labels, k=k, M=M, reduction="sum").backward()
    C = logits.shape[-1]
    expected = 2.0 / C * logits.clone()
    rows = torch.arange(len(labels))
    expected[rows, labels] = 2.0 / C * k * (logits[rows, labels] - M)
    torch.testing.assert_close(x.grad, expected)


# ---------------------------------------------------------------------------------------------------------------
# low precision
# ---------------------------------------------------------------------------------------------------------------
def _autocast_dtypes():
    out = [torch.bfloat16]
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            torch.nn.Linear(2, 2)(torch.randn(1, 2))
        out.append(torch.float16)
    except RuntimeError:  # pragma: no cover - older CPUs/torch
        pass
    return out


@pytest.mark.parametrize("dtype", _autocast_dtypes())
@pytest.mark.parametrize("name", list(LOSS_FUNCTIONS))
def test_autocast_large_vocabulary_is_finite_and_float32(dtype, name):
    torch.manual_seed(0)
    C, N = 32_000, 64
    head = torch.nn.Linear(32, C)
    h = torch.randn(N, 32) * 3
    labels = torch.randint(0, C, (N,))
    kwargs = {"k": 15.0, "M": 30.0} if name == "square" else {}
    fn = LOSS_FUNCTIONS[name]
    with torch.autocast("cpu", dtype=dtype):
        logits = head(h)
        assert logits.dtype == dtype
        loss = fn(logits, labels, **kwargs)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(head.weight.grad).all()
    # same value as the float32 computation on the same (rounded) logits
    reference = fn(logits.detach().float(), labels, **kwargs)
    torch.testing.assert_close(loss.detach(), reference, rtol=1e-5, atol=1e-5)


def test_square_loss_half_logits_keep_dtype_of_gradient():
    logits = torch.randn(8, 1000).half().requires_grad_(True)
    labels = torch.randint(0, 1000, (8,))
    loss = hsl.square_loss(logits, labels, k=15, M=30)
    assert loss.dtype == torch.float32
    loss.backward()
    assert logits.grad.dtype == torch.float16
    x = logits.detach().float().requires_grad_(True)
    hsl.square_loss(x, labels, k=15, M=30).backward()
    torch.testing.assert_close(logits.grad.float(), x.grad, rtol=1e-2, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 6),
    c=st.integers(2, 9),
    scale=st.floats(0.01, 20.0),
    alpha=st.floats(0.0, 5.0),
    k=st.floats(0.1, 20.0),
    M=st.floats(0.1, 40.0),
    seed=st.integers(0, 2**16),
)
def test_properties(n, c, scale, alpha, k, M, seed):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, c, generator=g, dtype=torch.float64)
    labels = torch.randint(0, c, (n,), generator=g)
    sq = hsl.square_loss(logits, labels, k=k, M=M, reduction="none")
    assert (sq >= 0).all()
    torch.testing.assert_close(sq, ref_square(logits, labels, k, M), rtol=1e-9, atol=1e-9)
    tce = hsl.tamed_cross_entropy(logits, labels, alpha=alpha, reduction="none")
    ce = F.cross_entropy(logits, labels, reduction="none")
    assert (tce >= 0).all() and (tce <= ce + 1e-9).all()
    torch.testing.assert_close(tce, ref_tce(logits, labels, alpha), rtol=1e-8, atol=1e-10)
    # softmax losses are shift invariant and bounded
    shift = torch.randn(n, 1, generator=g, dtype=torch.float64) * 5
    torch.testing.assert_close(
        hsl.tamed_cross_entropy(logits + shift, labels, alpha=alpha, reduction="none"), tce
    )
    mse = hsl.softmax_mse(logits, labels, reduction="none")
    mae = hsl.softmax_mae(logits, labels, reduction="none")
    assert ((mse >= 0) & (mse <= 2 + 1e-12)).all() and ((mae >= 0) & (mae <= 2 + 1e-12)).all()


# ---------------------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(LOSS_FUNCTIONS))
def test_bad_labels(name):
    fn = LOSS_FUNCTIONS[name]
    logits = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"outside \[0, 2\].*max 3"):
        fn(logits, torch.tensor([0, 1, 3, 2]))
    with pytest.raises(ValueError, match=r"outside \[0, 2\].*min -1"):
        fn(logits, torch.tensor([0, -1, 2, 2]))
    with pytest.raises(ValueError, match="integer tensor"):
        fn(logits, torch.tensor([0.0, 1.0, 2.0, 1.0]))


@pytest.mark.parametrize("name", list(LOSS_FUNCTIONS))
def test_bad_shapes(name):
    fn = LOSS_FUNCTIONS[name]
    with pytest.raises(ValueError, match="shape mismatch"):
        fn(torch.randn(4, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="shape mismatch"):
        fn(torch.randn(2, 3, 5), torch.zeros(2, 5, dtype=torch.long))  # (N, C, T) layout is not ours
    with pytest.raises(ValueError, match="at least 2 classes"):
        fn(torch.randn(4, 1), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="reduction"):
        fn(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), reduction="avg")


@pytest.mark.parametrize("name", list(LOSS_FUNCTIONS))
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("column", [1, 2])
def test_non_finite_logits(name, bad, column):
    fn = LOSS_FUNCTIONS[name]
    logits = torch.randn(4, 3)
    logits[2, column] = bad
    labels = torch.tensor([0, 1, 2, 1])
    # bounded when q_y = 0: TCE with alpha > 1 (by 1 / (alpha - 1)), GCE (by 1 / q), the softmax errors
    bounded = name in ("tce", "softmax_mse", "softmax_mae", "gce")
    raw_logits = hsl.get_loss_spec(name).raw_logits  # a square term on the logits: -inf is not a valid input
    if bad == -float("inf") and not raw_logits and (column != 2 or bounded):
        # q = 0 for that class: a legitimate (if extreme) input whose loss is finite, so it is not flagged
        assert torch.isfinite(fn(logits, labels))
        return
    with pytest.raises(ValueError, match=r"non-finite values \((1 NaN, 0 Inf|0 NaN, 1 Inf)\)"):
        fn(logits, labels)


def test_non_finite_logits_in_ignored_rows_are_harmless_for_softmax_losses():
    logits = torch.randn(4, 3)
    logits[2, 1] = float("nan")
    labels = torch.tensor([0, 1, -100, 1])
    assert torch.isfinite(hsl.tamed_cross_entropy(logits, labels))


def test_overflow_is_diagnosed():
    logits = torch.full((2, 3), 1e30)
    with pytest.raises(ValueError, match="overflow"):
        hsl.square_loss(logits, torch.tensor([0, 1]))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda x, y: hsl.square_loss(x, y, k=0), "k must be"),
        (lambda x, y: hsl.square_loss(x, y, k=-1), "k must be"),
        (lambda x, y: hsl.square_loss(x, y, M=0), "M must be"),
        (lambda x, y: hsl.square_loss(x, y, M=float("nan")), "M must be"),
        (lambda x, y: hsl.square_loss(x, y, k="a"), "k must be"),
        (lambda x, y: hsl.tamed_cross_entropy(x, y, alpha=-0.1), "alpha must be"),
        (lambda x, y: hsl.tamed_cross_entropy(x, y, alpha=float("inf")), "alpha must be"),
        (lambda x, y: hsl.cross_entropy(x, y, label_smoothing=1.0), "label_smoothing"),
    ],
)
def test_bad_hyper_parameters(call, match):
    with pytest.raises(ValueError, match=match):
        call(torch.randn(4, 3), torch.tensor([0, 1, 2, 1]))


def test_modules_wrap_functional():
    logits, labels = _data()
    torch.testing.assert_close(
        hsl.SquareLoss(k=2, M=3)(logits, labels), hsl.square_loss(logits, labels, k=2, M=3)
    )
    torch.testing.assert_close(
        hsl.TamedCrossEntropyLoss(alpha=0.5, reduction="sum")(logits, labels),
        hsl.tamed_cross_entropy(logits, labels, alpha=0.5, reduction="sum"),
    )
    torch.testing.assert_close(hsl.SoftmaxMSELoss()(logits, labels), hsl.softmax_mse(logits, labels))
    torch.testing.assert_close(hsl.SoftmaxMAELoss()(logits, labels), hsl.softmax_mae(logits, labels))
    torch.testing.assert_close(
        hsl.CrossEntropyLoss(label_smoothing=0.2)(logits, labels),
        hsl.cross_entropy(logits, labels, label_smoothing=0.2),
    )
    assert "k=2" in repr(hsl.SquareLoss(k=2, M=3))
    with pytest.raises(ValueError, match="k must be"):
        hsl.SquareLoss(k=0)
    with pytest.raises(ValueError, match="alpha must be"):
        hsl.TamedCrossEntropyLoss(alpha=-1)
    with pytest.raises(ValueError, match="reduction"):
        hsl.SoftmaxMAELoss(reduction="batch")


# ---------------------------------------------------------------------------------------------------------------
# memory: the square loss creates no N x C tensor besides the gradient
# ---------------------------------------------------------------------------------------------------------------
class _LargeOutputs(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the distinct storages of at least ``min_bytes`` that aten ops return."""

    def __init__(self, min_bytes: int) -> None:
        super().__init__()
        self.min_bytes = min_bytes
        self.storages: dict[int, str] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes() >= self.min_bytes:
                self.storages.setdefault(t.untyped_storage().data_ptr(), str(func))
        return out


@pytest.mark.parametrize(
    "dtype,autocast", [(torch.float32, False), (torch.bfloat16, True), (torch.float16, False)]
)
def test_square_loss_allocates_only_the_gradient(dtype, autocast):
    n, c = 256, 1000
    logits = torch.randn(n, c).to(dtype).requires_grad_(True)
    labels = torch.randint(0, c, (n,))
    min_bytes = n * c * torch.finfo(dtype).bits // 8
    with _LargeOutputs(min_bytes) as seen:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = hsl.square_loss(logits, labels, k=15, M=30)
        loss.backward()
    new = {ptr: op for ptr, op in seen.storages.items() if ptr != logits.untyped_storage().data_ptr()}
    assert list(new) == [logits.grad.untyped_storage().data_ptr()], new
    # the reference point: cross-entropy keeps its log-softmax and more
    with _LargeOutputs(min_bytes) as seen_ce:
        F.cross_entropy(logits.float(), labels).backward()
    assert len(seen_ce.storages) >= 3


def test_tce_allocates_only_the_gradient_for_float32_logits(monkeypatch):
    monkeypatch.setattr(hsl.functional, "FUSED_TCE_MIN_CLASSES", 1000)  # large label sets, at a test's size
    n, c = 256, 1000
    logits = torch.randn(n, c).requires_grad_(True)
    labels = torch.randint(0, c, (n,))
    with _LargeOutputs(n * c * 4) as seen:
        hsl.tamed_cross_entropy(logits, labels, alpha=1.5).backward()
    new = {ptr: op for ptr, op in seen.storages.items() if ptr != logits.untyped_storage().data_ptr()}
    assert list(new) == [logits.grad.untyped_storage().data_ptr()], new
    # and the gradient is still the cross-entropy gradient scaled by t^-alpha, item by item
    x = logits.detach().double()
    log_q = torch.log_softmax(x, dim=-1)
    t = 1.0 - log_q[torch.arange(n), labels]
    expected = torch.softmax(x, dim=-1)
    expected[torch.arange(n), labels] -= 1.0
    expected *= (t**-1.5 / n).unsqueeze(-1)
    torch.testing.assert_close(logits.grad.double(), expected, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 1.5, 3.0])
@pytest.mark.parametrize("c", [3, 40])
@pytest.mark.parametrize("fused", [False, True])
def test_tce_both_paths_match_the_formula_and_autograd(c, alpha, fused, monkeypatch):
    """Below ``FUSED_TCE_MIN_CLASSES`` TCE goes through log-softmax, from it on through its own backward."""
    monkeypatch.setattr(hsl.functional, "FUSED_TCE_MIN_CLASSES", 2 if fused else 10**9)
    torch.manual_seed(c)
    logits = (3 * torch.randn(5, c, dtype=torch.float64)).requires_grad_(True)
    labels = torch.tensor([0, c - 1, -100, 1, 2])
    ours = hsl.tamed_cross_entropy(logits, labels, alpha=alpha, reduction="none")
    torch.testing.assert_close(ours, ref_tce(logits, labels, alpha), rtol=1e-12, atol=1e-12)
    # the same formula written with differentiable torch operations, for the reference gradient
    ref_logits = logits.detach().clone().requires_grad_(True)
    keep = labels != -100
    rows, cols = torch.arange(5)[keep], labels[keep]
    m = ref_logits.max(dim=-1).values
    log_q_y = ref_logits[rows, cols] - (m[keep] + torch.exp(ref_logits[keep] - m[keep, None]).sum(-1).log())
    t = 1.0 - log_q_y
    tamed = torch.log(t) if alpha == 1 else (t ** (1 - alpha) - 1) / (1 - alpha)
    expected = torch.zeros(5, dtype=torch.float64).index_put((rows,), tamed)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
    weights = torch.arange(1.0, 6.0, dtype=torch.float64)  # a non-uniform upstream gradient
    (ours * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(logits.grad, ref_logits.grad, rtol=1e-10, atol=1e-12)
    # second derivatives (for Hessian-vector products)
    x = logits.detach()[:2].clone().requires_grad_(True)
    fn = lambda z: hsl.tamed_cross_entropy(z, labels[:2], alpha=alpha)  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize(
    "module,per_item",
    [
        (
            lambda **kw: hsl.SquareLoss(k=2.0, M=3.0, **kw),
            lambda f, y: (2.0 * (f.gather(-1, y[:, None]).squeeze(-1) - 3.0) ** 2 + (f**2).sum(-1)
                          - f.gather(-1, y[:, None]).squeeze(-1) ** 2) / f.shape[-1],
        ),
        (
            lambda **kw: hsl.TamedCrossEntropyLoss(alpha=0.5, **kw),
            lambda f, y: ((1 - torch.log_softmax(f, -1).gather(-1, y[:, None]).squeeze(-1)) ** 0.5 - 1) / 0.5,
        ),
        (
            lambda **kw: hsl.CrossEntropyLoss(**kw),
            lambda f, y: -torch.log_softmax(f, -1).gather(-1, y[:, None]).squeeze(-1),
        ),
        (
            lambda **kw: hsl.SoftmaxMSELoss(**kw),
            lambda f, y: ((torch.softmax(f, -1) - F.one_hot(y, f.shape[-1])) ** 2).sum(-1),
        ),
        (
            lambda **kw: hsl.SoftmaxMAELoss(**kw),
            lambda f, y: (torch.softmax(f, -1) - F.one_hot(y, f.shape[-1])).abs().sum(-1),
        ),
    ],
)  # fmt: skip
def test_module_wrappers_pass_ignore_index_and_reduction(module, per_item):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 5, (7,), generator=g)
    labels[[1, 4]] = 3
    labels[2] = 0
    keep = labels != 3  # ignore_index=3: a valid class index, skipped
    expected = torch.where(keep, per_item(logits, torch.where(keep, labels, 0)), 0.0)
    got = module(ignore_index=3, reduction="none")(logits, labels)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(module(ignore_index=3, reduction="sum")(logits, labels), expected.sum())
    torch.testing.assert_close(
        module(ignore_index=3, reduction="mean")(logits, labels), expected.sum() / keep.sum()
    )
    with pytest.raises(ValueError, match="reduction"):
        module(reduction="batch")
