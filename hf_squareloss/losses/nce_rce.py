r"""Normalized cross-entropy plus reverse cross-entropy, an active-passive loss (Ma et al., ICML 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..functional import _compute_dtype, _finish, _flatten, _reduce, check_negative
from ._fused import differentiable_grad, finite_log_sum_exp
from .sce import DEFAULT_RCE_A, check_weights, reverse_cross_entropy_of_nll

__all__ = ["DEFAULT_NCE_RCE_ALPHA", "DEFAULT_NCE_RCE_BETA", "nce_rce"]

DEFAULT_NCE_RCE_ALPHA = 1.0
DEFAULT_NCE_RCE_BETA = 1.0
"""The weights of NCE and RCE: the paper's CIFAR-10 setting."""


def _per_item(x: Tensor, target: Tensor, valid: Tensor, alpha: float, beta: float, A: float) -> Tensor:
    """The loss per row from differentiable operations (used for double backward)."""
    log_q = torch.log_softmax(x, dim=-1)
    nll = -log_q.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    nce = nll / -log_q.sum(-1)
    return torch.where(valid, alpha * nce + beta * reverse_cross_entropy_of_nll(nll, A), 0.0)


class _NCERCEFunction(torch.autograd.Function):
    r"""Per-item NCE+RCE with a hand-written backward.

    With :math:`n_y = -\log q_y` and :math:`D = \sum_j -\log q_j = C\,(\mathrm{lse}(f) - \bar f)`, forward needs
    three ``(N,)`` reductions (log-sum-exp, mean, target logit). The gradient is
    :math:`a\,q + b + c\,e_y` per row, with
    :math:`a = \alpha (1/D - C n_y/D^2) - \beta A q_y`, :math:`b = \alpha n_y / D^2`,
    :math:`c = -\alpha/D + \beta A q_y`: one ``N x C`` buffer, written in place.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, valid: Tensor, alpha: float, beta: float, A: float):
        acc = _compute_dtype(logits)
        num_classes = logits.shape[-1]
        with torch.autocast(device_type=logits.device.type, enabled=False):
            x = logits.to(acc)
            lse = finite_log_sum_exp(x)
            f_y = x.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            nll = lse - f_y
            # sum_j -log q_j = C (lse - mean f): >= C log C, no cancellation between large terms
            denominator = num_classes * (lse - x.mean(dim=-1))
            per_item = alpha * nll / denominator + beta * reverse_cross_entropy_of_nll(nll, A)
            per_item = torch.where(valid, per_item, 0.0)
        ctx.save_for_backward(logits, target, valid, lse, nll, denominator)
        ctx.weights = (alpha, beta, A)
        return per_item

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        logits, target, valid, lse, nll, denominator = ctx.saved_tensors
        alpha, beta, A = ctx.weights
        acc = _compute_dtype(logits)
        if torch.is_grad_enabled():
            grad = differentiable_grad(
                lambda x: _per_item(x.to(acc), target, valid, alpha, beta, A), logits, grad_out
            )
            return grad.to(logits.dtype), None, None, None, None, None
        num_classes = logits.shape[-1]
        index = target.unsqueeze(-1)
        w = torch.where(valid, grad_out, 0.0)
        inv_d = 1.0 / denominator  # 0 where a class is impossible (D = inf): NCE is then 0 and flat
        q_y = torch.exp(-nll)
        rce = beta * A * q_y
        a = w * (alpha * (inv_d - num_classes * nll * inv_d * inv_d) - rce)
        b = w * (alpha * nll * inv_d * inv_d)
        c = w * (rce - alpha * inv_d)
        grad = logits.to(acc) - lse.unsqueeze(-1)  # the one N x C buffer (for float32 logits)
        grad.exp_().mul_(a.unsqueeze(-1)).add_(b.unsqueeze(-1))
        grad.scatter_add_(-1, index, c.unsqueeze(-1))
        return grad.to(logits.dtype), None, None, None, None, None


def nce_rce(
    logits: Tensor,
    labels: Tensor,
    *,
    alpha: float = DEFAULT_NCE_RCE_ALPHA,
    beta: float = DEFAULT_NCE_RCE_BETA,
    A: float = DEFAULT_RCE_A,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""NCE+RCE of Ma et al. (ICML 2020): normalized cross-entropy (active) plus reverse cross-entropy (passive).

    With :math:`q = \mathrm{softmax}(f)`:

    .. math::
        \ell(f, y) = \alpha\,\frac{\log q_y}{\sum_{j=1}^{C} \log q_j} + \beta\,\bigl(-A\,(1 - q_y)\bigr)

    The normalized cross-entropy (NCE) is in :math:`[0, 1]` and robust to symmetric label noise; the reverse
    cross-entropy (RCE, as in :func:`hf_squareloss.symmetric_cross_entropy`) adds the passive, robust term that
    makes the pair fit well. ``A`` defaults to :math:`\log(10^{-4})`, the clamp of the authors' public code (as for
    SCE; see there). The paper's settings of ``(alpha, beta)`` vary by data set (e.g. ``(1, 1)`` on CIFAR-10,
    ``(10, 0.1)`` on CIFAR-100); the default is ``(1, 1)``.

    Numerically: :math:`\sum_j -\log q_j = C(\mathrm{logsumexp}(f) - \bar f) \ge C \log C`, from three ``(N,)``
    reductions; the backward pass is hand-written and allocates only the gradient.

    Args:
        logits: ``(..., C)`` raw scores; computed in float32 (float64 for float64 logits).
        labels: ``(...)`` integer class indices in ``[0, C)`` or ``ignore_index``.
        alpha: weight of the NCE, >= 0.
        beta: weight of the RCE, >= 0 (not both 0).
        A: the reverse cross-entropy's stand-in for :math:`\log 0`, < 0.
        ignore_index: label value whose items are skipped.
        reduction: ``"none"``, ``"sum"``, or ``"mean"`` over non-ignored items.

    Reference: X. Ma, H. Huang, Y. Wang, S. Romano, S. Erfani and J. Bailey, *Normalized Loss Functions for Deep
    Learning with Noisy Labels*, ICML 2020, arXiv:2006.13554.
    """
    alpha, beta = check_weights(alpha, beta)
    A = check_negative("A", A)
    logits_2d, labels_1d, valid, bad = _flatten(logits, labels, ignore_index, reduction, "nce_rce")
    target = torch.where(valid, labels_1d, 0)
    per_item = _NCERCEFunction.apply(logits_2d, target, valid, alpha, beta, A)
    result = _reduce(per_item, valid, reduction, labels.shape)
    return _finish(result, logits, labels, bad, valid, ignore_index, "nce_rce")
