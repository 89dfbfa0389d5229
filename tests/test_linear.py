"""The hidden-state losses against the loop formulas on materialised logits, autograd, gradcheck, and their
allocations, op by op."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_functional import ref_ce, ref_square, ref_tce

import hf_squareloss as hsl

LINEAR = {
    "square": (hsl.linear_square_loss, {"k": 15.0, "M": 30.0}),
    "tce": (hsl.linear_tamed_cross_entropy, {"alpha": 1.5}),
    "ce": (hsl.linear_cross_entropy, {}),
}


def _inputs(shape=(2, 3), d=6, v=11, bias=True, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(*shape, d, generator=g, dtype=dtype).requires_grad_(True)
    weight = torch.randn(v, d, generator=g, dtype=dtype).requires_grad_(True)
    b = torch.randn(v, generator=g, dtype=dtype).requires_grad_(True) if bias else None
    labels = torch.randint(0, v, shape, generator=g)
    return hidden, weight, b, labels


def _reference(name, logits, labels, ignore_index, **kw):
    """Per-item loss from the loop formulas of test_functional (float64, no torch loss code)."""
    flat, lab = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    if name == "square":
        return ref_square(flat, lab, kw["k"], kw["M"], ignore_index)
    if name == "tce":
        return ref_tce(flat, lab, kw["alpha"], ignore_index)
    return ref_ce(flat, lab, ignore_index)


def _differentiable_reference(name, logits, labels, ignore_index, **kw):
    """The same formulas written with differentiable torch operations on the logits, per item (0 if ignored)."""
    keep = labels != ignore_index
    safe = torch.where(keep, labels, 0)
    f_y = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    if name == "square":
        c = logits.shape[-1]
        per = (kw["k"] * (f_y - kw["M"]) ** 2 + (logits**2).sum(-1) - f_y**2) / c
    else:
        m = logits.max(-1, keepdim=True).values.detach()
        log_q_y = f_y - (m.squeeze(-1) + torch.exp(logits - m).sum(-1).log())
        if name == "ce":
            per = -log_q_y
        else:
            a = kw["alpha"]
            per = ((1 - log_q_y) ** (1 - a) - 1) / (1 - a)
    return torch.where(keep, per, 0.0)


@pytest.mark.parametrize("name", list(LINEAR))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [-100, 4])
def test_value_and_gradients_match_the_logits_formula(name, bias, reduction, ignore_index):
    fn, kw = LINEAR[name]
    hidden, weight, b, labels = _inputs(shape=(3, 5), bias=bias, seed=len(name))
    labels[0, :2] = ignore_index
    labels[2, 4] = ignore_index
    extra = {"chunk_size": 4} if name != "square" else {}
    ours = fn(hidden, weight, labels, b, ignore_index=ignore_index, reduction=reduction, **kw, **extra)
    logits = hidden @ weight.T + (b if b is not None else 0.0)
    per_item = _reference(name, logits.detach(), labels, ignore_index, **kw).reshape(labels.shape)
    keep = labels != ignore_index
    expected = {"none": per_item, "sum": per_item.sum(), "mean": per_item.sum() / keep.sum()}[reduction]
    torch.testing.assert_close(ours.detach(), expected, rtol=1e-10, atol=1e-12)
    # gradients of all three inputs against autograd through the materialised logits
    ref = _differentiable_reference(name, logits, labels, ignore_index, **kw)
    ref = {"none": ref, "sum": ref.sum(), "mean": ref.sum() / keep.sum()}[reduction]
    upstream = torch.rand_like(ours) + 0.5  # non-uniform for reduction="none"
    inputs = [t for t in (hidden, weight, b) if t is not None]
    got = torch.autograd.grad((ours * upstream).sum(), inputs)
    want = torch.autograd.grad((ref * upstream).sum(), inputs)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-11)
    # and the package's own logits losses agree (same conventions)
    logits_loss = {"square": hsl.square_loss, "tce": hsl.tamed_cross_entropy, "ce": hsl.cross_entropy}[name]
    torch.testing.assert_close(
        ours.detach(),
        logits_loss(logits.detach(), labels, ignore_index=ignore_index, reduction=reduction, **kw),
        rtol=1e-10,
        atol=1e-12,
    )


@pytest.mark.parametrize("name", list(LINEAR))
def test_gradcheck(name):
    fn, kw = LINEAR[name]
    hidden, weight, b, labels = _inputs(shape=(5,), d=3, v=4)
    labels[1] = -100
    extra = {"chunk_size": 2} if name != "square" else {}
    for reduction in ("mean", "none"):
        assert torch.autograd.gradcheck(
            lambda h, w, bb: fn(h, w, labels, bb, reduction=reduction, **kw, **extra),  # noqa: B023
            (hidden, weight, b),
        )


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 100])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 3.0])
def test_chunking_does_not_change_the_result(chunk_size, alpha):
    hidden, weight, b, labels = _inputs(shape=(7,), d=5, v=9, seed=3)
    ours = hsl.linear_tamed_cross_entropy(hidden, weight, labels, b, alpha=alpha, chunk_size=chunk_size)
    expected = hsl.tamed_cross_entropy(hidden @ weight.T + b, labels, alpha=alpha)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
    got = torch.autograd.grad(ours, (hidden, weight, b))
    want = torch.autograd.grad(expected, (hidden, weight, b))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_cross_entropy_with_label_smoothing_matches_torch():
    hidden, weight, b, labels = _inputs(shape=(4, 3), seed=5)
    labels[1, 1] = -100
    ours = hsl.linear_cross_entropy(hidden, weight, labels, b, label_smoothing=0.2, chunk_size=5)
    logits = hidden @ weight.T + b
    expected = F.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1), label_smoothing=0.2)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
    got = torch.autograd.grad(ours, (hidden, weight, b))
    want = torch.autograd.grad(expected, (hidden, weight, b))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_tied_weight_gets_both_gradients():
    """An ordinary gradient: a weight used as embedding and as output layer accumulates both contributions."""
    g = torch.Generator().manual_seed(0)
    table = torch.randn(12, 4, generator=g, dtype=torch.float64, requires_grad=True)
    tokens = torch.randint(0, 12, (3, 5), generator=g)
    labels = torch.randint(0, 12, (3, 5), generator=g)
    for name, (fn, kw) in LINEAR.items():
        hidden = torch.tanh(F.embedding(tokens, table))
        (ours,) = torch.autograd.grad(fn(hidden, table, labels, **kw), table)
        hidden = torch.tanh(F.embedding(tokens, table))
        logits_fn = {"square": hsl.square_loss, "tce": hsl.tamed_cross_entropy, "ce": hsl.cross_entropy}[name]
        (want,) = torch.autograd.grad(logits_fn(hidden @ table.T, labels, **kw), table)
        torch.testing.assert_close(ours, want, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# allocations: no N x V tensor (square), nothing above one block of rows (softmax losses)
# ---------------------------------------------------------------------------------------------------------------
class _Allocations(torch.utils._python_dispatch.TorchDispatchMode):
    """Records every aten op's output storages: size in bytes and dtype, by op."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: list[tuple[str, int, torch.dtype]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.outputs.append((str(func), t.untyped_storage().nbytes(), t.dtype))
        return out

    def largest(self) -> tuple[str, int, torch.dtype]:
        return max(self.outputs, key=lambda o: o[1])


@pytest.mark.parametrize(
    ("dtype", "autocast"), [(torch.float32, False), (torch.float32, True), (torch.bfloat16, False)]
)
def test_square_allocates_no_n_by_v_tensor_and_accumulates_in_float32(dtype, autocast):
    n, v, d = 512, 4096, 16
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, d, generator=g).to(dtype).requires_grad_(True)
    weight = (0.3 * torch.randn(v, d, generator=g)).to(dtype).requires_grad_(True)
    bias = torch.randn(v, generator=g).to(dtype).requires_grad_(True)
    labels = torch.randint(0, v, (n,), generator=g)
    with _Allocations() as seen:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = hsl.linear_square_loss(hidden, weight, labels, bias, k=15, M=30)
        loss.backward()
    op, nbytes, _ = seen.largest()
    # the largest tensor is a (V, d) one (the weight gradient or its float32 copy), far below N x V
    assert nbytes <= v * d * 4, (op, nbytes)
    assert nbytes * 8 <= n * v * dtype.itemsize
    products = [(o, dt) for o, _, dt in seen.outputs if "mm" in o or "matmul" in o or "addr" in o]
    assert products and all(dt == torch.float32 for _, dt in products), products
    assert loss.dtype == torch.float32
    assert hidden.grad.dtype == dtype and weight.grad.dtype == dtype and bias.grad.dtype == dtype
    # value and gradients against float64 through the logits
    h64, w64, b64 = (t.detach().double().requires_grad_(True) for t in (hidden, weight, bias))
    ref = hsl.square_loss(h64 @ w64.T + b64, labels, k=15, M=30)
    ref.backward()
    torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=0)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    for ours, want in ((hidden.grad, h64.grad), (weight.grad, w64.grad), (bias.grad, b64.grad)):
        torch.testing.assert_close(ours.double(), want, rtol=tol, atol=tol * want.abs().max().item())


@pytest.mark.parametrize("name", ["tce", "ce"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_softmax_losses_allocate_one_block_of_rows(name, reduction):
    n, v, d, chunk = 512, 2048, 16, 32
    fn, kw = LINEAR[name]
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, d, generator=g).requires_grad_(True)
    weight = torch.randn(v, d, generator=g).requires_grad_(True)
    labels = torch.randint(0, v, (n,), generator=g)
    with _Allocations() as seen:
        loss = fn(hidden, weight, labels, reduction=reduction, chunk_size=chunk, **kw)
        loss.sum().backward()
    op, nbytes, _ = seen.largest()
    assert nbytes <= chunk * v * 4, (op, nbytes)  # one block of float32 logits, 16x less than N x V
    expected = {"tce": hsl.tamed_cross_entropy, "ce": hsl.cross_entropy}[name](
        hidden.detach() @ weight.detach().T, labels, reduction=reduction, **kw
    )
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)


def test_softmax_losses_under_autocast_match_autocast_logits():
    """Under bf16 autocast the block logits come from a bf16 product, as F.linear's would; the rest is float32."""
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(64, 32, generator=g).requires_grad_(True)
    weight = torch.randn(300, 32, generator=g).requires_grad_(True)
    labels = torch.randint(0, 300, (64,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = hsl.linear_tamed_cross_entropy(hidden, weight, labels, chunk_size=16)
        logits = F.linear(hidden, weight)
        expected = hsl.tamed_cross_entropy(logits, labels)
    assert logits.dtype == torch.bfloat16 and ours.dtype == torch.float32
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    got = torch.autograd.grad(ours, (hidden, weight))
    want = torch.autograd.grad(expected, (hidden, weight))
    for a, b in zip(got, want, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2 * b.abs().max().item())


# ---------------------------------------------------------------------------------------------------------------
# numerics: the square loss when f_y^2 dominates sum_i f_i^2 (M = 30)
# ---------------------------------------------------------------------------------------------------------------
def _dominated_case(sigma, n=256, v=200, d=256, seed=0):
    """float32 inputs whose logits are exactly M e_y + sigma * noise (in float64): sum_{i != y} f_i^2 ~ sigma^2 V."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, v, generator=g, dtype=torch.float64))
    weight = 0.05 * q.T
    labels = torch.randint(0, v, (n,), generator=g)
    f = sigma * torch.randn(n, v, generator=g, dtype=torch.float64)
    f[torch.arange(n), labels] = 30.0
    hidden = f @ weight / 0.05**2
    return hidden.float(), weight.float(), labels


@pytest.mark.parametrize("sigma", [1.0, 0.01, 0.001])
def test_square_cancellation_at_m30_no_worse_than_float32_logits(sigma):
    hidden, weight, labels = _dominated_case(sigma)
    kw = {"k": 15.0, "M": 30.0, "reduction": "none"}
    h64, w64 = hidden.double().requires_grad_(True), weight.double()
    truth = hsl.square_loss(h64 @ w64.T, labels, **kw)
    truth.sum().backward()
    gram_h = hidden.clone().requires_grad_(True)
    gram = hsl.linear_square_loss(gram_h, weight, labels, **kw)
    gram.sum().backward()
    logit_h = hidden.clone().requires_grad_(True)
    logits = hsl.square_loss(logit_h @ weight.T, labels, **kw)
    logits.sum().backward()
    v = weight.shape[0]
    err_gram = ((gram.double() - truth).abs() * v).max().item()
    err_logits = ((logits.double() - truth).abs() * v).max().item()
    # absolute error of sum_{i != y} f_i^2 of the order of 1e-7 M^2 = 9e-5 on both paths, whatever sigma
    assert err_gram < 2e-3 and err_gram < 3 * err_logits + 1e-6, (err_gram, err_logits)
    assert bool((gram >= 0).all())
    # the gradient holds no difference of large terms: at least as accurate as through float32 logits
    rel = lambda grad: ((grad.double() - h64.grad).norm(dim=-1) / h64.grad.norm(dim=-1)).median().item()  # noqa: E731
    assert rel(gram_h.grad) <= rel(logit_h.grad), (rel(gram_h.grad), rel(logit_h.grad))


# ---------------------------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(LINEAR))
def test_ignored_rows_may_hold_anything(name):
    fn, kw = LINEAR[name]
    hidden, weight, b, labels = _inputs(shape=(6,), seed=2)
    bad_hidden = hidden.detach().clone()
    bad_hidden[2] = float("nan")
    bad_hidden[4] = float("inf")
    bad_hidden.requires_grad_(True)
    labels[2] = labels[4] = -100
    loss = fn(bad_hidden, weight, labels, b, **kw)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(weight.grad).all() and torch.isfinite(b.grad).all()
    assert (bad_hidden.grad[[2, 4]] == 0).all()
    with pytest.raises(ValueError, match="hidden contains non-finite values"):
        labels[2] = 0
        fn(bad_hidden, weight, labels, b, **kw)


@pytest.mark.parametrize("name", list(LINEAR))
def test_bad_inputs(name):
    fn, kw = LINEAR[name]
    hidden, weight, b, labels = _inputs()
    with pytest.raises(ValueError, match="shape mismatch"):
        fn(hidden, weight, labels[:, :2], b, **kw)
    with pytest.raises(ValueError, match=r"hidden must have shape \(\.\.\., d\) with d=6"):
        fn(hidden[..., :5], weight, labels, b, **kw)
    with pytest.raises(ValueError, match=r"weight must have shape \(V, d\)"):
        fn(hidden, weight[0], labels, b, **kw)
    with pytest.raises(ValueError, match=r"bias must have shape \(V,\)"):
        fn(hidden, weight, labels, b[:3], **kw)
    with pytest.raises(ValueError, match="integer tensor"):
        fn(hidden, weight, labels.float(), b, **kw)
    with pytest.raises(ValueError, match="reduction"):
        fn(hidden, weight, labels, b, reduction="batch", **kw)
    with pytest.raises(ValueError, match=r"label\(s\) outside \[0, 10\]"):
        fn(hidden, weight, torch.full_like(labels, 11), b, **kw)
    bad_weight = weight.detach().clone()
    bad_weight[3, 1] = float("nan")
    with pytest.raises(ValueError, match="weight contains non-finite values"):
        fn(hidden, bad_weight, labels, b, **kw)
    if name != "square":
        with pytest.raises(ValueError, match="chunk_size"):
            fn(hidden, weight, labels, b, chunk_size=0, **kw)


def test_loss_function_lookup():
    from hf_squareloss.registry import hidden_state_function

    assert hidden_state_function("square") is hsl.linear_square_loss
    assert hidden_state_function("tce") is hsl.linear_tamed_cross_entropy
    assert hidden_state_function("ce") is hsl.linear_cross_entropy
    with pytest.raises(ValueError, match=r"softmax_mse.*has no form computed from the hidden states"):
        hidden_state_function("softmax_mse")
