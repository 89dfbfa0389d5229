r"""Focal loss (Lin et al., ICCV 2017)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..functional import _finish, _flatten, _nll, _reduce, check_nonnegative

__all__ = ["DEFAULT_FOCAL_GAMMA", "focal_loss"]

DEFAULT_FOCAL_GAMMA = 2.0
"""The focusing exponent of the paper."""


def focal_loss(
    logits: Tensor,
    labels: Tensor,
    *,
    gamma: float = DEFAULT_FOCAL_GAMMA,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Multi-class focal loss of Lin et al. (ICCV 2017): cross-entropy down-weighted on well-classified items.

    With :math:`p = \mathrm{softmax}(f)`:

    .. math::
        \ell_\gamma(f, y) = -(1 - p_y)^\gamma \log p_y

    ``gamma = 0`` is exactly cross-entropy; the paper's default, and ours, is ``gamma = 2``. This is the softmax
    form without the class-balancing weight :math:`\alpha_t` (the paper's detector uses sigmoids and
    :math:`\alpha_t = 0.25`).

    Numerically: ``nll = -log p_y`` from a log-softmax and :math:`1 - p_y` as ``-expm1(-nll)``, so well-fitted
    items (``p_y`` near 1) keep their precision; the gradient stays finite at :math:`p_y = 1` for any
    ``gamma >= 0``.

    Args:
        logits: ``(..., C)`` raw scores; computed in float32 (float64 for float64 logits).
        labels: ``(...)`` integer class indices in ``[0, C)`` or ``ignore_index``.
        gamma: focusing exponent, >= 0.
        ignore_index: label value whose items are skipped.
        reduction: ``"none"``, ``"sum"``, or ``"mean"`` over non-ignored items.

    Reference: T.-Y. Lin, P. Goyal, R. Girshick, K. He and P. Dollár, *Focal Loss for Dense Object Detection*,
    ICCV 2017, arXiv:1708.02002.
    """
    gamma = check_nonnegative("gamma", gamma)
    logits_2d, labels_1d, valid, bad = _flatten(logits, labels, ignore_index, reduction, "focal_loss")
    nll = _nll(logits_2d, labels_1d, valid)
    if gamma == 0.0:
        per_item = nll
    else:
        # 1 - p_y, kept off 0 so that the derivative of its power stays finite (the product with nll -> 0 is 0)
        one_minus_p = (-torch.expm1(-nll)).clamp_min(torch.finfo(nll.dtype).tiny)
        per_item = one_minus_p.pow(gamma) * nll
    result = _reduce(per_item, valid, reduction, labels.shape)
    return _finish(result, logits, labels, bad, valid, ignore_index, "focal_loss")
