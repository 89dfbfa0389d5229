r"""Generalized cross-entropy (Zhang & Sabuncu, NeurIPS 2018)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..functional import _finish, _flatten, _nll, _reduce, check_unit_interval

__all__ = ["DEFAULT_GCE_Q", "generalized_cross_entropy"]

DEFAULT_GCE_Q = 0.7
"""The paper's setting for CIFAR-10/100 and Fashion-MNIST."""


def generalized_cross_entropy(
    logits: Tensor,
    labels: Tensor,
    *,
    q: float = DEFAULT_GCE_Q,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Generalized cross-entropy (the :math:`\mathcal{L}_q` loss) of Zhang & Sabuncu (NeurIPS 2018).

    With :math:`p = \mathrm{softmax}(f)`:

    .. math::
        \ell_q(f, y) = \frac{1 - p_y^{\,q}}{q}, \qquad 0 < q \le 1

    It tends to cross-entropy as :math:`q \to 0` and is the mean absolute error of the softmax (up to a factor 2)
    at :math:`q = 1`. Its gradient is cross-entropy's scaled per item by :math:`p_y^{\,q}`, so items the model finds
    unlikely (often mislabelled ones) pull less. The paper's default, and ours, is ``q = 0.7``.

    Numerically: :math:`p_y^{\,q}` is ``exp(-q * nll)`` with ``nll = -log p_y`` from a log-softmax, and the loss is
    ``-expm1(-q * nll) / q`` (accurate for well-fitted items, where ``1 - p_y^q`` is tiny).

    Args:
        logits: ``(..., C)`` raw scores; computed in float32 (float64 for float64 logits).
        labels: ``(...)`` integer class indices in ``[0, C)`` or ``ignore_index``.
        q: exponent in ``(0, 1]``.
        ignore_index: label value whose items are skipped.
        reduction: ``"none"``, ``"sum"``, or ``"mean"`` over non-ignored items.

    Reference: Z. Zhang and M. R. Sabuncu, *Generalized Cross Entropy Loss for Training Deep Neural Networks with
    Noisy Labels*, NeurIPS 2018, arXiv:1805.07836.
    """
    q = check_unit_interval("q", q)
    logits_2d, labels_1d, valid, bad = _flatten(
        logits, labels, ignore_index, reduction, "generalized_cross_entropy"
    )
    nll = _nll(logits_2d, labels_1d, valid)
    per_item = -torch.expm1(-q * nll) / q
    result = _reduce(per_item, valid, reduction, labels.shape)
    return _finish(result, logits, labels, bad, valid, ignore_index, "generalized_cross_entropy")
