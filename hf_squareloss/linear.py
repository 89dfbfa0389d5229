r"""Vocabulary-scale losses computed from the hidden states and the output layer, without the ``N x V`` logits.

Every function here takes the hidden states ``hidden`` of shape ``(..., d)`` that feed a linear output layer with
``weight`` ``(V, d)`` and optional ``bias`` ``(V,)``, and integer ``labels`` ``(...)``. Its value and its gradients
(of ``hidden``, ``weight`` and ``bias``) are those of the loss of the same name applied to the logits
``hidden @ weight.T + bias``, with the conventions of :mod:`hf_squareloss.functional` (``ignore_index``,
``reduction``, ``ValueError`` on bad input), but no ``N x V`` tensor is ever held:

* :func:`linear_square_loss` needs no logits at all. With :math:`G = W^\top W` (``d x d``),
  :math:`\sum_i f_i^2 = h^\top G h + 2 h^\top W^\top b + \lVert b \rVert^2` and :math:`f_y = w_y \cdot h + b_y`,
  so value and exact gradients cost :math:`O((N + V) d^2)` instead of :math:`O(N V d)`.
* :func:`linear_cross_entropy` and :func:`linear_tamed_cross_entropy` walk over blocks of ``chunk_size`` rows:
  each block's logits are made, turned into the block's loss and gradient, and dropped, so that peak memory is
  ``O(chunk_size x V)``. With a reduced loss (``"mean"``/``"sum"``) the gradients are computed in the same pass as
  the value (three matrix products in all, as for materialised logits); with ``reduction="none"`` the backward
  pass recomputes the blocks.

Precision: the Gram matrix and all sums are accumulated in float32 (float64 for float64 inputs), also under
fp16/bf16 autocast. The softmax losses take their block logits from a matrix product in the autocast dtype when
autocast is on (as ``F.linear`` would), then work in float32.

All three run under DistributedDataParallel as any other loss: the weight gradient is an ordinary
gradient of ``weight``. Second derivatives are not supported.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .functional import REDUCTIONS, check_alpha, check_label_smoothing, check_positive, tame

__all__ = [
    "default_chunk_size",
    "linear_cross_entropy",
    "linear_square_loss",
    "linear_tamed_cross_entropy",
]

_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)
# elements of one block of logits (float32: 64 MiB) when chunk_size is not given
_CHUNK_ELEMENTS = 2**24


def default_chunk_size(vocab_size: int) -> int:
    """Rows per block of the chunked softmax losses: about 16 M logits per block, at least 16 rows."""
    return max(16, _CHUNK_ELEMENTS // max(int(vocab_size), 1))


# --------------------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------------------
def _flatten(
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    bias: Tensor | None,
    ignore_index: int,
    reduction: str,
    loss: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Check shapes and dtypes; return ``(hidden_2d, target, valid, bad, labels_1d)``.

    ``target`` holds the labels of the valid items and 0 elsewhere (safe to index with); ``bad`` marks labels
    outside ``[0, V)`` that are not ``ignore_index`` (reported after the loss is computed).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"{loss}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    for name, value in (("hidden", hidden), ("weight", weight), ("labels", labels)):
        if not isinstance(value, Tensor):
            raise ValueError(f"{loss}: {name} must be a torch tensor, got {type(value).__name__}")
    if bias is not None and not isinstance(bias, Tensor):
        raise ValueError(f"{loss}: bias must be a torch tensor or None, got {type(bias).__name__}")
    for name, value in (("hidden", hidden), ("weight", weight), ("bias", bias)):
        if value is not None and not value.is_floating_point():
            raise ValueError(f"{loss}: {name} must be a floating-point tensor, got {value.dtype}")
    if labels.dtype not in _INT_DTYPES:
        raise ValueError(f"{loss}: labels must be an integer tensor of class indices, got {labels.dtype}")
    if weight.dim() != 2:
        raise ValueError(f"{loss}: weight must have shape (V, d), got {tuple(weight.shape)}")
    vocab, dim = weight.shape
    if vocab < 2:
        raise ValueError(f"{loss}: needs at least 2 classes, got weight with V={vocab} rows")
    if hidden.dim() == 0 or hidden.shape[-1] != dim:
        raise ValueError(
            f"{loss}: hidden must have shape (..., d) with d={dim} (the weight's second dimension), got "
            f"{tuple(hidden.shape)}"
        )
    if hidden.shape[:-1] != labels.shape:
        raise ValueError(
            f"{loss}: shape mismatch: hidden {tuple(hidden.shape)} and labels {tuple(labels.shape)}; expected "
            "hidden (..., d) and labels (...)"
        )
    if bias is not None and tuple(bias.shape) != (vocab,):
        raise ValueError(f"{loss}: bias must have shape (V,) = ({vocab},), got {tuple(bias.shape)}")
    devices = {t.device for t in (hidden, weight, labels, bias) if t is not None}
    if len(devices) > 1:
        raise ValueError(
            f"{loss}: hidden, weight, labels and bias must be on one device, got {sorted(map(str, devices))}"
        )
    hidden_2d = hidden.reshape(-1, dim)
    labels_1d = labels.reshape(-1)
    labels_1d = labels_1d if labels_1d.dtype == torch.int64 else labels_1d.long()
    valid = (labels_1d >= 0) & (labels_1d < vocab)
    not_ignored = labels_1d != ignore_index
    bad = not_ignored & ~valid
    if 0 <= ignore_index < vocab:
        valid &= not_ignored
    return hidden_2d, torch.where(valid, labels_1d, 0), valid, bad, labels_1d


def _reduce(per_item: Tensor, valid: Tensor, reduction: str, shape: torch.Size) -> Tensor:
    if reduction == "none":
        return per_item.reshape(shape)
    total = per_item.sum()
    return total if reduction == "sum" else total / valid.sum()


def _finish(
    result: Tensor,
    hidden_2d: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    labels_1d: Tensor,
    valid: Tensor,
    bad: Tensor,
    ignore_index: int,
    loss: str,
) -> Tensor:
    """One synchronisation: raise a precise ``ValueError`` on bad labels or a non-finite loss."""
    if not bool(bad.any() | ~torch.isfinite(result).all()):
        return result
    vocab = weight.shape[0]
    if bool(bad.any()):
        wrong = labels_1d[bad]
        raise ValueError(
            f"{loss}: {wrong.numel()} label(s) outside [0, {vocab - 1}] (V={vocab}) and not "
            f"ignore_index={ignore_index}: min {int(wrong.min())}, max {int(wrong.max())}"
        )
    if not bool(valid.any()):
        return result  # a mean over zero items is nan, as in torch
    for name, tensor in (("hidden", hidden_2d[valid]), ("weight", weight), ("bias", bias)):
        if tensor is not None and not bool(torch.isfinite(tensor).all()):
            n_nan = int(torch.isnan(tensor).sum())
            n_inf = int((~torch.isfinite(tensor)).sum()) - n_nan
            where = " in items that count" if name == "hidden" else ""
            raise ValueError(f"{loss}: {name} contains non-finite values ({n_nan} NaN, {n_inf} Inf){where}")
    raise ValueError(
        f"{loss}: loss is not finite although its inputs are; the values overflow the computation"
    )


def _acc_dtype(*tensors: Tensor | None) -> torch.dtype:
    """float32 for half/bfloat16/float32 inputs, float64 when any input is float64."""
    dtype = torch.float32
    for t in tensors:
        if t is not None:
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _matmul_dtype(hidden: Tensor, weight: Tensor) -> torch.dtype:
    """The dtype ``F.linear(hidden, weight)`` computes in: the autocast dtype under autocast, else the inputs'."""
    device_type = hidden.device.type
    if (
        torch.is_autocast_enabled(device_type)
        and torch.promote_types(hidden.dtype, weight.dtype) != torch.float64
    ):
        return torch.get_autocast_dtype(device_type)
    return torch.promote_types(hidden.dtype, weight.dtype)


# --------------------------------------------------------------------------------------------------------------
# rescaled square loss through the Gram matrix
# --------------------------------------------------------------------------------------------------------------
class _LinearSquareLossFunction(torch.autograd.Function):
    r"""Per-item rescaled square loss of ``hidden @ weight.T + bias`` from the Gram matrix ``weight.T @ weight``.

    Backward, with :math:`s_n` the per-item upstream gradient times :math:`2/V` and
    :math:`\delta_n = s_n ((k - 1) f_{y_n} - k M)`, so that :math:`\partial \ell_n / \partial f_n = s_n f_n +
    \delta_n e_{y_n}`:

    * hidden: :math:`s_n (G h_n + W^\top b) + \delta_n w_{y_n}`;
    * weight: :math:`W (\sum_n s_n h_n h_n^\top) + b (\sum_n s_n h_n)^\top + \sum_n \delta_n e_{y_n} h_n^\top`;
    * bias: :math:`W \sum_n s_n h_n + b \sum_n s_n + \sum_n \delta_n e_{y_n}`.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, target, valid, k, M):  # type: ignore[override]
        acc = _acc_dtype(hidden, weight, bias)
        vocab = weight.shape[0]
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            w = weight.to(acc)
            # ignored rows (and whatever they hold, NaN included) take no part, neither here nor in backward
            h = torch.where(valid.unsqueeze(-1), hidden.to(acc), 0.0)
            gram = w.T @ w  # (d, d), accumulated in acc
            hg = h @ gram  # (N, d)
            w_y = w.index_select(0, target)  # (N, d)
            f_y = torch.linalg.vecdot(w_y, h)
            total = torch.linalg.vecdot(hg, h)  # h^T G h = |W h|^2
            if bias is not None:
                b = bias.to(acc)
                wb = w.T @ b  # (d,)
                f_y = f_y + b.index_select(0, target)
                total = total + 2.0 * (h @ wb) + b.dot(b)
                hg = hg + wb  # G h + W^T b = W^T f
            # sum_{i != y} f_i^2 is >= 0; rounding of the two large terms must not make it negative
            others = (total - f_y * f_y).clamp_min(0.0)
            per_item = torch.where(valid, (others + k * (f_y - M).square()) / vocab, 0.0)
        ctx.save_for_backward(h, weight, bias, target, valid, hg, f_y)
        ctx.k, ctx.M, ctx.hidden_dtype = k, M, hidden.dtype
        return per_item

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        h, weight, bias, target, valid, wtf, f_y = ctx.saved_tensors
        k, M = ctx.k, ctx.M
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        acc = h.dtype
        vocab = weight.shape[0]
        w = weight.to(acc)
        s = torch.where(valid, grad_out.to(acc) * (2.0 / vocab), 0.0)
        delta = s * ((k - 1.0) * f_y - k * M)
        grad_h = grad_w = grad_b = None
        if need_h:
            grad_h = torch.addcmul(s.unsqueeze(-1) * wtf, delta.unsqueeze(-1), w.index_select(0, target))
        if need_w or need_b:
            sh = s @ h  # (d,) = sum_n s_n h_n
        if need_w:
            grad_w = w @ (h.T @ (s.unsqueeze(-1) * h))
            if bias is not None:
                grad_w.addr_(bias.to(acc), sh)
            grad_w.index_add_(0, target, delta.unsqueeze(-1) * h)
        if need_b and bias is not None:
            grad_b = w @ sh + bias.to(acc) * s.sum()
            grad_b.index_add_(0, target, delta)
        return (
            None if grad_h is None else grad_h.to(ctx.hidden_dtype),
            None if grad_w is None else grad_w.to(weight.dtype),
            None if grad_b is None else grad_b.to(bias.dtype),
            *([None] * 4),
        )


def linear_square_loss(
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    bias: Tensor | None = None,
    *,
    k: float = 1.0,
    M: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Rescaled square loss (Hui & Belkin, ICLR 2021) of the logits ``hidden @ weight.T + bias``, never made.

    Equals ``square_loss(hidden @ weight.T + bias, labels, k=k, M=M)`` in value and in the gradients of ``hidden``,
    ``weight`` and ``bias``. With :math:`f = W h + b` and :math:`G = W^\top W`:

    .. math::
        \ell(h, y) = \frac{1}{V}\Big(k\,(f_y - M)^2 + \sum_{i \ne y} f_i^2\Big), \qquad
        \sum_i f_i^2 = h^\top G h + 2\, h^\top W^\top b + \lVert b \rVert^2, \qquad f_y = w_y \cdot h + b_y.

    Cost :math:`O((N + V) d^2)` time and :math:`O((N + V) d)` memory (the ``d x d`` Gram matrix, per-row
    ``(N, d)`` terms and the weight gradient), against :math:`O(N V d)` and :math:`O(N V)` through the logits.

    Numerics: :math:`\sum_{i \ne y} f_i^2` is a difference of two terms of size :math:`f_y^2 \approx M^2`; in
    float32 its absolute error is about :math:`4 \cdot 10^{-7} M^2` (measured in ``docs/benchmarks.md``), the same as
    ``square_loss`` on float32 logits, which forms the same difference. It is clamped at 0. The gradients hold no
    such difference of large terms beyond the one of the logits path. For float64 inputs everything is float64.

    Args:
        hidden: ``(..., d)`` hidden states fed to the output layer, any floating dtype.
        weight: ``(V, d)`` output-layer weight (``nn.Linear.weight``).
        labels: ``(...)`` integer class indices in ``[0, V)`` or ``ignore_index``.
        bias: ``(V,)`` output-layer bias, or ``None``.
        k, M: weight and target of the true-class term, > 0 (see :func:`hf_squareloss.square_loss`).
        ignore_index: label value whose items are skipped.
        reduction: ``"none"`` (shape of ``labels``), ``"sum"``, or ``"mean"`` over non-ignored items.

    Reference: L. Hui and M. Belkin, *Evaluation of Neural Architectures Trained with Square Loss vs
    Cross-Entropy in Classification Tasks*, ICLR 2021, arXiv:2006.07322.
    """
    where = "linear_square_loss"
    k = check_positive("k", k)
    M = check_positive("M", M)
    hidden_2d, target, valid, bad, labels_1d = _flatten(
        hidden, weight, labels, bias, ignore_index, reduction, where
    )
    per_item = _LinearSquareLossFunction.apply(hidden_2d, weight, bias, target, valid, k, M)
    result = _reduce(per_item, valid, reduction, labels.shape)
    return _finish(result, hidden_2d, weight, bias, labels_1d, valid, bad, ignore_index, where)


# --------------------------------------------------------------------------------------------------------------
# chunked softmax losses: cross-entropy (with label smoothing) and Tamed CE
# --------------------------------------------------------------------------------------------------------------
def _block_logits(
    h: Tensor, weight_mm: Tensor, bias: Tensor | None, valid: Tensor, acc: torch.dtype
) -> Tensor:
    """One block's ``(rows, V)`` logits, made in ``weight_mm``'s dtype and held in ``acc``. Ignored rows get the
    logits of a zero hidden state, so that whatever they hold (NaN included) cannot reach a result."""
    h = torch.where(valid.unsqueeze(-1), h, 0.0).to(weight_mm.dtype)
    x = (h @ weight_mm.T).to(acc)
    if bias is not None:
        x += bias.to(acc)
    return x


def _block(
    h: Tensor,
    weight_mm: Tensor,
    bias: Tensor | None,
    target: Tensor,
    valid: Tensor,
    alpha: float,
    eps: float,
    acc: torch.dtype,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Loss of one block of rows: ``(e, z, per_item, lse, nll)``.

    ``e = exp(x - max x)`` (rows, V) is made in place of the block's logits ``x`` and ``z`` is its row sum, so that
    ``e / z`` is the softmax; the caller turns ``e`` into the gradient in place (:func:`_grad_from_exp_`).
    """
    x = _block_logits(h, weight_mm, bias, valid, acc)
    f_y = x.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    mean = x.mean(-1) if eps else None
    top = x.amax(-1)
    top = torch.where(torch.isfinite(top), top, 0.0)  # a +inf or NaN row stays non-finite below
    e = x.sub_(top.unsqueeze(-1)).exp_()
    z = e.sum(-1)
    lse = top + z.log()
    # -log q_y from the log-sum-exp; a +inf logit makes the loss NaN (as log_softmax does) rather than bounded
    nll = torch.where(valid, torch.where(torch.isinf(lse), torch.nan, lse - f_y), 0.0)
    per_item = tame(nll, alpha)
    if eps:  # label smoothing: (1 - eps) nll + eps (lse - mean_i f_i)
        per_item = torch.where(valid, (1.0 - eps) * nll + eps * (lse - mean), 0.0)
    return e, z, per_item, lse, nll


def _finish_grad_(q_scaled: Tensor, scale: Tensor, target: Tensor, eps: float) -> Tensor:
    r"""From ``w_n q_n`` in place to :math:`w_n (q_n - (1 - \varepsilon) e_{y_n} - \varepsilon / V)`."""
    q_scaled.scatter_add_(-1, target.unsqueeze(-1), (-(1.0 - eps) * scale).unsqueeze(-1))
    if eps:
        q_scaled.sub_((eps / q_scaled.shape[-1]) * scale.unsqueeze(-1))
    return q_scaled


def _grad_from_exp_(e: Tensor, z: Tensor, scale: Tensor, target: Tensor, eps: float) -> Tensor:
    """The block's d loss / d logits, in place of ``e`` (from :func:`_block`); ``scale`` is 0 for ignored rows."""
    return _finish_grad_(e.mul_((scale / z).unsqueeze(-1)), scale, target, eps)


def _grad_from_logits_(x: Tensor, lse: Tensor, scale: Tensor, target: Tensor, eps: float) -> Tensor:
    """The block's d loss / d logits, in place of its logits ``x``, given their log-sum-exp."""
    return _finish_grad_(x.sub_(lse.unsqueeze(-1)).exp_().mul_(scale.unsqueeze(-1)), scale, target, eps)


def _item_weights(per_item_nll: Tensor, valid: Tensor, alpha: float) -> Tensor:
    """Per-item factor of the cross-entropy gradient: :math:`t^{-\alpha}` with :math:`t = 1 + \text{nll}`."""
    if alpha == 0.0:
        return valid.to(per_item_nll.dtype)
    return torch.where(valid, torch.pow(1.0 + per_item_nll, -alpha), 0.0)


class _LinearSoftmaxFunction(torch.autograd.Function):
    """Chunked Tamed CE / cross-entropy of ``hidden @ weight.T + bias``.

    ``reduce=True``: returns the summed loss; the gradients (of a sum) are made block by block in the forward pass
    and scaled by the upstream scalar in backward. ``reduce=False``: returns per-item values and keeps the
    ``(N,)`` log-sum-exp; backward recomputes each block's logits.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, target, valid, alpha, eps, chunk, mm_dtype, reduce, want_grad):  # type: ignore[override]
        acc = _acc_dtype(hidden, weight, bias)
        n = hidden.shape[0]
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        eager = reduce and want_grad
        per_items, lses = [], []
        grad_h = torch.empty(hidden.shape, dtype=acc, device=hidden.device) if eager and need_h else None
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if eager and need_w else None
        grad_b = (
            torch.zeros(bias.shape, dtype=acc, device=bias.device)
            if eager and need_b and bias is not None
            else None
        )
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            w_mm = weight.to(mm_dtype)
            for start in range(0, n, chunk):
                rows = slice(start, min(start + chunk, n))
                h, t, v = hidden[rows], target[rows], valid[rows]
                e, z, per_item, lse, nll = _block(h, w_mm, bias, t, v, alpha, eps, acc)
                per_items.append(per_item)
                if eager:
                    g = _grad_from_exp_(e, z, _item_weights(nll, v, alpha), t, eps)
                    _accumulate(g, h, w_mm, rows, grad_h, grad_w, grad_b, v)
                else:
                    lses.append(lse)
                del e
        per_item = torch.cat(per_items)
        if eager:
            ctx.save_for_backward(grad_h, grad_w, grad_b)
        else:
            lse = torch.cat(lses) if lses else per_item.new_zeros(0)
            ctx.save_for_backward(hidden, weight, bias, target, valid, lse, per_item)
        ctx.eager, ctx.alpha, ctx.eps, ctx.chunk, ctx.mm_dtype = eager, alpha, eps, chunk, mm_dtype
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        return per_item.sum() if reduce else per_item

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        h_dtype, w_dtype, b_dtype = ctx.dtypes
        if ctx.eager:
            grads = ctx.saved_tensors
            scaled = [
                None if g is None else (g * grad_out).to(dt) for g, dt in zip(grads, ctx.dtypes, strict=True)
            ]
            return *scaled, *([None] * 8)
        hidden, weight, bias, target, valid, lse, _ = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        acc = _acc_dtype(hidden, weight, bias)
        grad_h = torch.empty(hidden.shape, dtype=acc, device=hidden.device) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
        grad_b = (
            torch.zeros(bias.shape, dtype=acc, device=bias.device) if need_b and bias is not None else None
        )
        w_mm = weight.to(ctx.mm_dtype)
        n = hidden.shape[0]
        for start in range(0, n, ctx.chunk):
            rows = slice(start, min(start + ctx.chunk, n))
            h, t, v = hidden[rows], target[rows], valid[rows]
            x = _block_logits(h, w_mm, bias, v, acc)
            nll = torch.where(v, lse[rows] - x.gather(-1, t.unsqueeze(-1)).squeeze(-1), 0.0)
            scale = _item_weights(nll, v, ctx.alpha) * grad_out[rows].to(acc)
            g = _grad_from_logits_(x, lse[rows], scale, t, ctx.eps)
            _accumulate(g, h, w_mm, rows, grad_h, grad_w, grad_b, v)
            del x, g
        return (
            None if grad_h is None else grad_h.to(h_dtype),
            None if grad_w is None else grad_w.to(w_dtype),
            None if grad_b is None else grad_b.to(b_dtype),
            *([None] * 8),
        )


def _accumulate(
    g: Tensor,
    h: Tensor,
    w_mm: Tensor,
    rows: slice,
    grad_h: Tensor | None,
    grad_w: Tensor | None,
    grad_b: Tensor | None,
    valid: Tensor,
) -> None:
    """Add one block's contribution ``g`` (``(rows, V)``, d loss / d logits) to the three gradients."""
    g_mm = g.to(w_mm.dtype)
    if grad_h is not None:
        if grad_h.dtype == w_mm.dtype:
            torch.matmul(g_mm, w_mm, out=grad_h[rows])  # straight into its rows of the gradient
        else:
            grad_h[rows] = g_mm @ w_mm
    if grad_w is not None:
        # ignored rows have g = 0; zero their hidden states too, so that NaN there cannot leak in
        h_mm = torch.where(valid.unsqueeze(-1), h, 0.0).to(w_mm.dtype)
        if grad_w.dtype == w_mm.dtype:
            grad_w.addmm_(g_mm.T, h_mm)  # in place: no (V, d) temporary
        else:  # a low-precision product (autocast), accumulated in float32
            grad_w += g_mm.T @ h_mm
    if grad_b is not None:
        grad_b += g.sum(0)


def _linear_softmax_loss(
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    bias: Tensor | None,
    alpha: float,
    eps: float,
    ignore_index: int,
    reduction: str,
    chunk_size: int | None,
    where: str,
) -> Tensor:
    hidden_2d, target, valid, bad, labels_1d = _flatten(
        hidden, weight, labels, bias, ignore_index, reduction, where
    )
    if chunk_size is None:
        chunk_size = default_chunk_size(weight.shape[0])
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"{where}: chunk_size must be a positive integer or None, got {chunk_size!r}")
    mm_dtype = _matmul_dtype(hidden, weight)
    reduce = reduction != "none"
    want_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (hidden, weight, bias)
    )
    out = _LinearSoftmaxFunction.apply(
        hidden_2d, weight, bias, target, valid, alpha, eps, chunk_size, mm_dtype, reduce, want_grad
    )
    if reduction == "none":
        result = out.reshape(labels.shape)
    else:
        result = out if reduction == "sum" else out / valid.sum()
    return _finish(result, hidden_2d, weight, bias, labels_1d, valid, bad, ignore_index, where)


def linear_tamed_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    bias: Tensor | None = None,
    *,
    alpha: float = 1.5,
    ignore_index: int = -100,
    reduction: str = "mean",
    chunk_size: int | None = None,
) -> Tensor:
    r"""Tamed Cross Entropy (Martinez & Stiefelhagen, GCPR 2018) of ``hidden @ weight.T + bias``, in blocks of rows.

    Equals ``tamed_cross_entropy(hidden @ weight.T + bias, labels, alpha=alpha)`` in value and in the gradients of
    ``hidden``, ``weight`` and ``bias``; with :math:`q = \mathrm{softmax}(f)` and :math:`t = 1 - \log q_y`:

    .. math::
        \ell_\alpha = \frac{t^{1-\alpha} - 1}{1 - \alpha}, \qquad
        \frac{\partial \ell_\alpha}{\partial f} = t^{-\alpha}\,(q - e_y).

    Only ``chunk_size`` rows of logits exist at a time (default :func:`default_chunk_size`: about 16 M logits);
    peak memory is ``O(chunk_size x V)`` plus the gradients of the inputs.

    Args:
        hidden: ``(..., d)`` hidden states fed to the output layer.
        weight: ``(V, d)`` output-layer weight.
        labels: ``(...)`` integer class indices in ``[0, V)`` or ``ignore_index``.
        bias: ``(V,)`` or ``None``.
        alpha: taming strength, >= 0 (0 is cross-entropy).
        ignore_index: label value whose items are skipped.
        reduction: ``"none"``, ``"sum"``, or ``"mean"`` over non-ignored items.
        chunk_size: rows per block, or ``None`` for the default.

    Reference: M. Martinez and R. Stiefelhagen, *Taming the Cross Entropy Loss*, GCPR 2018, LNCS 11269,
    pp. 628-637, arXiv:1810.05075.
    """
    alpha = check_alpha(alpha)
    return _linear_softmax_loss(
        hidden,
        weight,
        labels,
        bias,
        alpha,
        0.0,
        ignore_index,
        reduction,
        chunk_size,
        "linear_tamed_cross_entropy",
    )


def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    bias: Tensor | None = None,
    *,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    chunk_size: int | None = None,
) -> Tensor:
    r"""Softmax cross-entropy of ``hidden @ weight.T + bias``, in blocks of rows, never holding the ``N x V`` logits.

    Equals ``cross_entropy(hidden @ weight.T + bias, labels, label_smoothing=label_smoothing)`` (and
    :func:`torch.nn.functional.cross_entropy`) in value and in the gradients of ``hidden``, ``weight`` and
    ``bias``: :math:`\ell = (1 - \varepsilon)(-\log q_y) + \varepsilon\,(\log \sum_i e^{f_i} - \frac{1}{V}
    \sum_i f_i)`. Arguments as in :func:`linear_tamed_cross_entropy`.
    """
    eps = check_label_smoothing(label_smoothing)
    return _linear_softmax_loss(
        hidden, weight, labels, bias, 0.0, eps, ignore_index, reduction, chunk_size, "linear_cross_entropy"
    )
