r"""Symmetric cross-entropy: cross-entropy plus reverse cross-entropy (Wang et al., ICCV 2019)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..functional import _finish, _flatten, _nll, _reduce, check_negative, check_nonnegative

__all__ = [
    "DEFAULT_RCE_A",
    "DEFAULT_SCE_ALPHA",
    "DEFAULT_SCE_BETA",
    "check_weights",
    "reverse_cross_entropy_of_nll",
    "symmetric_cross_entropy",
]

DEFAULT_SCE_ALPHA = 0.1
DEFAULT_SCE_BETA = 1.0
"""The weights of SCE's two terms in the paper's CIFAR-10 setting."""

DEFAULT_RCE_A = math.log(1e-4)
r"""The :math:`A` of the reverse cross-entropy, :math:`\log(10^{-4}) \approx -9.21`: the public code of Wang et al.
clamps the one-hot label to ``1e-4`` before its (natural) logarithm; the paper's text says :math:`A = -4`."""


def reverse_cross_entropy_of_nll(nll: Tensor, A: float) -> Tensor:
    r""":math:`-A (1 - p_y)` from :math:`\text{nll} = -\log p_y`, as ``A * expm1(-nll)`` (0 where ``nll`` is 0)."""
    return A * torch.expm1(-nll)


def check_weights(alpha: float, beta: float) -> tuple[float, float]:
    """Validate the two weights of a combined loss: each >= 0, not both 0."""
    alpha, beta = check_nonnegative("alpha", alpha), check_nonnegative("beta", beta)
    if alpha == 0.0 and beta == 0.0:
        raise ValueError("alpha and beta are both 0: the loss would be identically zero")
    return alpha, beta


def symmetric_cross_entropy(
    logits: Tensor,
    labels: Tensor,
    *,
    alpha: float = DEFAULT_SCE_ALPHA,
    beta: float = DEFAULT_SCE_BETA,
    A: float = DEFAULT_RCE_A,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Symmetric cross-entropy (SCE) of Wang et al. (ICCV 2019), robust to label noise.

    With :math:`p = \mathrm{softmax}(f)`:

    .. math::
        \ell(f, y) = \alpha\,(-\log p_y) + \beta\,\mathrm{RCE}, \qquad
        \mathrm{RCE} = -\sum_k p_k \log \tilde e_{y,k} = -A\,(1 - p_y)

    where the reverse cross-entropy (RCE) swaps the roles of prediction and label, and the label's
    :math:`\log 0` is replaced by :math:`A < 0`.

    **The value of** :math:`A`. The paper writes :math:`A = -4`; its public code clamps the one-hot label to
    ``1e-4`` and takes the natural logarithm, which is :math:`A = \log(10^{-4}) \approx -9.21`. The numbers in the
    paper come from that code, so the default here is ``A = log(1e-4)``; pass ``A=-4`` for the text's value.
    (The public code also clamps :math:`p` to ``[1e-7, 1]`` inside the RCE; we do not, which only changes items
    with :math:`p_k < 10^{-7}`, by less than :math:`10^{-6} |A|`.)

    The defaults ``alpha = 0.1, beta = 1`` are the paper's CIFAR-10 setting (CIFAR-100 used ``6.0, 0.1``).

    Args:
        logits: ``(..., C)`` raw scores; computed in float32 (float64 for float64 logits).
        labels: ``(...)`` integer class indices in ``[0, C)`` or ``ignore_index``.
        alpha: weight of the cross-entropy, >= 0.
        beta: weight of the reverse cross-entropy, >= 0 (not both 0).
        A: the reverse cross-entropy's stand-in for :math:`\log 0`, < 0.
        ignore_index: label value whose items are skipped.
        reduction: ``"none"``, ``"sum"``, or ``"mean"`` over non-ignored items.

    Reference: Y. Wang, X. Ma, Z. Chen, Y. Luo, J. Yi and J. Bailey, *Symmetric Cross Entropy for Robust Learning
    with Noisy Labels*, ICCV 2019, arXiv:1908.06112.
    """
    alpha, beta = check_weights(alpha, beta)
    A = check_negative("A", A)
    logits_2d, labels_1d, valid, bad = _flatten(
        logits, labels, ignore_index, reduction, "symmetric_cross_entropy"
    )
    nll = _nll(logits_2d, labels_1d, valid)
    per_item = alpha * nll + beta * reverse_cross_entropy_of_nll(nll, A)
    result = _reduce(per_item, valid, reduction, labels.shape)
    return _finish(result, logits, labels, bad, valid, ignore_index, "symmetric_cross_entropy")
