r"""Squentropy: cross-entropy plus the mean square of the non-target logits (Hui, Belkin & Wright, ICML 2023)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..functional import _compute_dtype, _finish, _flatten, _reduce
from ._fused import differentiable_grad, finite_log_sum_exp

__all__ = ["squentropy"]


def _per_item(x: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """The loss per row from differentiable operations (used for double backward)."""
    num_classes = x.shape[-1]
    index = target.unsqueeze(-1)
    nll = -torch.log_softmax(x, dim=-1).gather(-1, index).squeeze(-1)
    f_y = x.gather(-1, index).squeeze(-1)
    square = ((x * x).sum(-1) - f_y * f_y) / (num_classes - 1)
    return torch.where(valid, nll + square, 0.0)


class _SquentropyFunction(torch.autograd.Function):
    r"""Per-item squentropy with a hand-written backward.

    Forward keeps an ``(N,)`` log-sum-exp (no ``N x C`` log-softmax); backward writes
    :math:`\mathrm{softmax}(f) - e_y + \frac{2}{C-1} f \odot (1 - e_y)` into one ``N x C`` buffer, in place.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        acc = _compute_dtype(logits)
        num_classes = logits.shape[-1]
        with torch.autocast(device_type=logits.device.type, enabled=False):
            x = logits.to(acc)
            lse = finite_log_sum_exp(x)
            f_y = x.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            sq_norm = torch.linalg.vector_norm(x, ord=2, dim=-1).square()
            per_item = torch.where(valid, (lse - f_y) + (sq_norm - f_y * f_y) / (num_classes - 1), 0.0)
        ctx.save_for_backward(logits, target, valid, lse)
        return per_item

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        logits, target, valid, lse = ctx.saved_tensors
        acc = _compute_dtype(logits)
        if torch.is_grad_enabled():
            grad = differentiable_grad(lambda x: _per_item(x.to(acc), target, valid), logits, grad_out)
            return grad.to(logits.dtype), None, None
        num_classes = logits.shape[-1]
        index = target.unsqueeze(-1)
        x = logits.to(acc)
        w = torch.where(valid, grad_out, 0.0)
        s = w * (2.0 / (num_classes - 1))
        grad = x - lse.unsqueeze(-1)  # the one N x C buffer (for float32 logits)
        grad.exp_().mul_(w.unsqueeze(-1))
        grad.addcmul_(x, s.unsqueeze(-1))
        # the target class: softmax - 1, and no square term
        f_y = x.gather(-1, index).squeeze(-1)
        grad.scatter_add_(-1, index, (-w - s * f_y).unsqueeze(-1))
        return grad.to(logits.dtype), None, None


def squentropy(
    logits: Tensor,
    labels: Tensor,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Squentropy of Hui, Belkin & Wright (ICML 2023): cross-entropy plus the square loss of the other classes.

    With logits :math:`f \in \mathbb{R}^C`, label :math:`y` and :math:`q = \mathrm{softmax}(f)`:

    .. math::
        \ell(f, y) = -\log q_y + \frac{1}{C-1} \sum_{i \ne y} f_i^2

    The square term is on the **raw** logits and averaged over the :math:`C-1` non-target classes (not over
    :math:`C`); it needs no ``(k, M)``. The trained logits are logits of a softmax: ``softmax(f)`` gives class
    probabilities, as with cross-entropy.

    The cross-entropy part comes from an ``(N,)`` log-sum-exp; the backward pass is hand-written and allocates only
    the gradient.

    Args:
        logits: ``(..., C)`` raw scores; computed in float32 (float64 for float64 logits).
        labels: ``(...)`` integer class indices in ``[0, C)`` or ``ignore_index``.
        ignore_index: label value whose items are skipped.
        reduction: ``"none"``, ``"sum"``, or ``"mean"`` over non-ignored items.

    Reference: L. Hui, M. Belkin and S. Wright, *Cut your Losses with Squentropy*, ICML 2023, PMLR 202,
    arXiv:2302.03952.
    """
    logits_2d, labels_1d, valid, bad = _flatten(logits, labels, ignore_index, reduction, "squentropy")
    per_item = _SquentropyFunction.apply(logits_2d, torch.where(valid, labels_1d, 0), valid)
    result = _reduce(per_item, valid, reduction, labels.shape)
    return _finish(result, logits, labels, bad, valid, ignore_index, "squentropy")
