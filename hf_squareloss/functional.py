"""Functional core: the classification losses on ``(..., C)`` logits and ``(...)`` integer labels.

Every loss here

* takes ``logits`` of shape ``(..., C)`` (class dimension last) and integer ``labels`` of shape ``(...)``;
* skips items whose label equals ``ignore_index`` (zero loss, zero gradient);
* reduces with ``reduction`` in ``"none" | "sum" | "mean"``, ``"mean"`` being the mean over the non-ignored items
  (``nan`` when there are none, as in :func:`torch.nn.functional.cross_entropy`);
* computes in float32 (or float64 for float64 logits), also under fp16/bf16 autocast;
* never builds an ``N x C`` one-hot or weight tensor;
* raises :class:`ValueError` naming the problem on bad input. Validation costs no extra pass over the logits:
  the labels are checked, and the finiteness of the result; only when the result is not finite are the logits
  inspected, to say why. (So a ``-inf`` logit on a wrong class, a legitimate "impossible class" for the
  softmax-based losses, is accepted: their result stays finite.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "cross_entropy",
    "softmax_mae",
    "softmax_mse",
    "square_loss",
    "tame",
    "tamed_cross_entropy",
]

REDUCTIONS = ("none", "sum", "mean")
DEFAULT_TCE_ALPHA = 1.5
"""The TCE paper's best trade-off, the default ``alpha`` everywhere."""
_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


# --------------------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------------------
def check_positive(name: str, value: float) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` if it is not a finite number > 0."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number > 0, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def check_alpha(alpha: float) -> float:
    """Return the TCE ``alpha`` as a float, or raise ``ValueError`` if it is not a finite number >= 0."""
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number >= 0, got {alpha!r}") from None
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0 (0 is cross-entropy), got {alpha!r}")
    return alpha


def _as_finite(name: str, value: float, expected: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {expected}, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(
            f"{name} must be a finite number {expected.removeprefix('a number ')}, got {value!r}"
        )
    return value


def check_nonnegative(name: str, value: float) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` if it is not a finite number >= 0."""
    value = _as_finite(name, value, "a number >= 0")
    if value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def check_unit_interval(name: str, value: float) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` if it is not in ``(0, 1]``."""
    value = _as_finite(name, value, "a number in (0, 1]")
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be a finite number in (0, 1], got {value!r}")
    return value


def check_negative(name: str, value: float) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` if it is not a finite number < 0."""
    value = _as_finite(name, value, "a number < 0")
    if value >= 0:
        raise ValueError(f"{name} must be a finite number < 0, got {value!r}")
    return value


def check_label_smoothing(label_smoothing: float) -> float:
    try:
        label_smoothing = float(label_smoothing)
    except (TypeError, ValueError):
        raise ValueError(f"label_smoothing must be a number in [0, 1), got {label_smoothing!r}") from None
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    return label_smoothing


def _flatten(logits: Tensor, labels: Tensor, ignore_index: int, reduction: str, loss: str):
    """Check shapes, dtypes and the reduction; return ``(logits_2d, labels_1d, valid, bad)``.

    ``valid`` marks the items that count; ``bad`` the labels outside ``[0, C)`` that are not ``ignore_index``
    (reported after the loss is computed, so that the common path synchronises once). Callers replace the labels
    of non-valid items before indexing with them, so that no kernel ever sees an out-of-range index.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"{loss}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not isinstance(logits, Tensor) or not isinstance(labels, Tensor):
        raise ValueError(
            f"{loss}: logits and labels must be torch tensors, got {type(logits).__name__} "
            f"and {type(labels).__name__}"
        )
    if not logits.is_floating_point():
        raise ValueError(f"{loss}: logits must be a floating-point tensor, got {logits.dtype}")
    if labels.dtype not in _INT_DTYPES:
        raise ValueError(f"{loss}: labels must be an integer tensor of class indices, got {labels.dtype}")
    if logits.dim() == 0:
        raise ValueError(f"{loss}: logits must have shape (..., C), got a scalar")
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"{loss}: shape mismatch: logits {tuple(logits.shape)} and labels {tuple(labels.shape)}; expected "
            "logits (..., C) with the classes in the last dimension and labels (...)"
        )
    num_classes = logits.shape[-1]
    if num_classes < 2:
        raise ValueError(f"{loss}: needs at least 2 classes, got logits with C={num_classes}")
    logits_2d = logits.reshape(-1, num_classes)
    labels_1d = labels.reshape(-1)
    labels_1d = labels_1d if labels_1d.dtype == torch.int64 else labels_1d.long()
    valid = (labels_1d >= 0) & (labels_1d < num_classes)
    not_ignored = labels_1d != ignore_index
    bad = not_ignored & ~valid
    if 0 <= ignore_index < num_classes:
        valid &= not_ignored
    return logits_2d, labels_1d, valid, bad


def _reduce(per_item: Tensor, valid: Tensor, reduction: str, shape: torch.Size) -> Tensor:
    if reduction == "none":
        return per_item.reshape(shape)
    total = per_item.sum()
    if reduction == "sum":
        return total
    return total / valid.sum()


def _finish(
    result: Tensor, logits: Tensor, labels: Tensor, bad: Tensor, valid: Tensor, ignore_index: int, loss: str
) -> Tensor:
    """One synchronisation: raise a precise ``ValueError`` on bad labels or a non-finite loss."""
    problem = bad.any() | ~torch.isfinite(result).all()
    if not bool(problem):
        return result
    num_classes = logits.shape[-1]
    labels_1d_raw = labels.reshape(-1)
    if bool(bad.any()):
        wrong = labels_1d_raw[bad]
        raise ValueError(
            f"{loss}: {wrong.numel()} label(s) outside [0, {num_classes - 1}] (C={num_classes}) and not "
            f"ignore_index={ignore_index}: min {int(wrong.min())}, max {int(wrong.max())}"
        )
    if not bool(valid.any()):
        return result  # a mean over zero items is nan, as in torch
    rows = logits.reshape(-1, num_classes)[valid]
    nonfinite = ~torch.isfinite(rows)
    if bool(nonfinite.any()):
        n_nan = int(torch.isnan(rows).sum())
        n_inf = int(nonfinite.sum()) - n_nan
        raise ValueError(
            f"{loss}: logits contain non-finite values ({n_nan} NaN, {n_inf} Inf) in items that count"
        )
    raise ValueError(
        f"{loss}: loss is not finite although the logits are (max |logit| = {float(rows.abs().max()):.3g}); "
        "the values overflow the loss computation"
    )


def _compute_dtype(logits: Tensor) -> torch.dtype:
    """float32 for half/bfloat16/float32 logits, float64 for float64 logits."""
    return torch.promote_types(logits.dtype, torch.float32)


def _nll(
    logits_2d: Tensor, labels_1d: Tensor, valid: Tensor, label_smoothing: float = 0.0, reduction: str = "none"
) -> Tensor:
    """``-log softmax(logits)_y`` (with optional label smoothing) in float32/64, 0 where not valid, reduced by
    :func:`torch.nn.functional.cross_entropy` itself so that cross-entropy is bit-identical to it."""
    x = logits_2d.to(_compute_dtype(logits_2d))
    target = torch.where(valid, labels_1d, -100)
    return F.cross_entropy(x, target, ignore_index=-100, reduction=reduction, label_smoothing=label_smoothing)


# --------------------------------------------------------------------------------------------------------------
# rescaled square loss (Hui & Belkin, 2021)
# --------------------------------------------------------------------------------------------------------------
class _SquareLossFunction(torch.autograd.Function):
    """Per-item rescaled square loss with a hand-written backward.

    Forward reads the logits once (a fused norm reduction and a gather); backward writes the gradient once.
    No ``N x C`` temporary exists besides the gradient itself, in the logits' dtype.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, valid: Tensor, k: float, M: float) -> Tensor:
        acc = _compute_dtype(logits)
        num_classes = logits.shape[-1]
        with torch.autocast(device_type=logits.device.type, enabled=False):
            # sum_i f_i^2 in the accumulation dtype, without materialising the squares
            sq_norm = torch.linalg.vector_norm(logits, ord=2, dim=-1, dtype=acc).square()
            f_y = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1).to(acc)
            per_item = (sq_norm - f_y * f_y + k * (f_y - M).square()) / num_classes
            per_item = torch.where(valid, per_item, 0.0)
        ctx.save_for_backward(logits, target, valid)
        ctx.k, ctx.M = k, M
        return per_item

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        logits, target, valid = ctx.saved_tensors
        k, M = ctx.k, ctx.M
        num_classes = logits.shape[-1]
        index = target.unsqueeze(-1)
        # d l / d f_i = (2/C) f_i for i != y ;  d l / d f_y = (2/C) k (f_y - M)
        scale = torch.where(valid, grad_out * (2.0 / num_classes), 0.0)
        f_y = logits.gather(-1, index).squeeze(-1).to(scale.dtype)
        if (
            torch.is_grad_enabled()
        ):  # double backward requested: stay differentiable (Hessian-vector products)
            grad = logits * scale.unsqueeze(-1)
            grad = grad.scatter(-1, index, (scale * k * (f_y - M)).unsqueeze(-1))
            return grad.to(logits.dtype), None, None, None, None
        grad = torch.empty_like(logits)
        torch.mul(
            logits, scale.unsqueeze(-1), out=grad
        )  # computed in the accumulation dtype, stored in logits'
        grad.scatter_(-1, index, (scale * k * (f_y - M)).to(grad.dtype).unsqueeze(-1))
        return grad, None, None, None, None


def square_loss(
    logits: Tensor,
    labels: Tensor,
    *,
    k: float = 1.0,
    M: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Rescaled square loss of Hui & Belkin (ICLR 2021), on raw logits (no softmax).

    For an item with logits :math:`f \in \mathbb{R}^C` and label :math:`y`:

    .. math::
        \ell(f, y) = \frac{1}{C}\Big(k\,(f_y - M)^2 + \sum_{i \ne y} f_i^2\Big)

    ``k`` weights the true class and ``M`` is its target value; ``(k, M) = (1, 1)`` is the plain square loss
    against the one-hot vector, averaged over classes. The paper uses ``(1, 15)`` for TIMIT and WSJ and
    ``(15, 30)`` for LibriSpeech and ImageNet; :func:`hf_squareloss.square_loss_preset` picks them.

    The model's outputs are scores, not probabilities: predict with ``argmax`` and do not apply a softmax.

    Args:
        logits: ``(..., C)`` raw scores, any floating dtype; the loss is computed in float32 (float64 for float64).
        labels: ``(...)`` integer class indices in ``[0, C)`` or ``ignore_index``.
        k: weight of the true-class term, > 0.
        M: target value of the true-class logit, > 0.
        ignore_index: label value whose items are skipped.
        reduction: ``"none"`` (shape of ``labels``), ``"sum"``, or ``"mean"`` over non-ignored items.

    Reference: L. Hui and M. Belkin, *Evaluation of Neural Architectures Trained with Square Loss vs
    Cross-Entropy in Classification Tasks*, ICLR 2021, arXiv:2006.07322.
    """
    k = check_positive("k", k)
    M = check_positive("M", M)
    logits_2d, labels_1d, valid, bad = _flatten(logits, labels, ignore_index, reduction, "square_loss")
    per_item = _SquareLossFunction.apply(logits_2d, torch.where(valid, labels_1d, 0), valid, k, M)
    result = _reduce(per_item, valid, reduction, labels.shape)
    return _finish(result, logits, labels, bad, valid, ignore_index, "square_loss")


# --------------------------------------------------------------------------------------------------------------
# Tamed Cross Entropy (Martinez & Stiefelhagen, 2018)
# --------------------------------------------------------------------------------------------------------------
def tame(nll: Tensor, alpha: float) -> Tensor:
    r"""The TCE transform of a non-negative negative log-likelihood: :math:`((1+\text{nll})^{1-a} - 1)/(1-a)`.

    Computed as ``expm1((1 - a) * log1p(nll)) / (1 - a)``, which is accurate for small ``nll`` and tends
    continuously to ``log1p(nll)`` as ``a -> 1`` (used exactly at ``a = 1``). At ``a = 0`` it returns ``nll``
    itself. Its derivative is :math:`(1+\text{nll})^{-a}`.
    """
    if alpha == 0.0:
        return nll
    log_t = torch.log1p(nll)
    if alpha == 1.0:
        return log_t
    b = 1.0 - alpha
    return torch.expm1(b * log_t) / b


# From this many classes on, TCE uses its own autograd function: same values and gradient, a third of the peak
# memory of the log-softmax path, within a few percent of its time; with fewer classes log-softmax's fused kernels
# are clearly faster on CPU (docs/benchmarks.md).
FUSED_TCE_MIN_CLASSES = 4096


class _TamedCEFunction(torch.autograd.Function):
    r"""Per-item Tamed CE for ``alpha > 0`` with a hand-written backward.

    Forward keeps one ``(N,)`` log-sum-exp instead of an ``N x C`` log-softmax; backward writes the gradient
    :math:`t^{-\alpha}\,(\mathrm{softmax}(f) - e_y)` into one ``N x C`` buffer, in place. With float32 logits
    that buffer is the only ``N x C`` tensor besides the logits (``torch.logsumexp`` uses a transient one).
    """

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, valid: Tensor, alpha: float) -> Tensor:
        acc = _compute_dtype(logits)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            x = logits.to(acc)
            lse = torch.logsumexp(x, dim=-1)
            f_y = x.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            # -log q_y from the log-sum-exp (never log(softmax)); an infinite log-sum-exp (a +inf logit) is NaN
            # as in log_softmax, so that a bounded tame() cannot hide it
            nll = torch.where(valid, torch.where(torch.isinf(lse), torch.nan, lse - f_y), 0.0)
            per_item = tame(nll, alpha)
        ctx.save_for_backward(logits, target, valid, lse, nll)
        ctx.alpha = alpha
        return per_item

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        logits, target, valid, lse, nll = ctx.saved_tensors
        alpha = ctx.alpha
        index = target.unsqueeze(-1)
        acc = _compute_dtype(logits)
        if torch.is_grad_enabled():
            # double backward requested: recompute from the logits with differentiable operations
            log_q = torch.log_softmax(logits.to(acc), dim=-1)
            nll_d = -log_q.gather(-1, index).squeeze(-1)
            w = torch.where(valid, grad_out * torch.pow(1.0 + nll_d, -alpha), 0.0)
            grad = torch.exp(log_q) * w.unsqueeze(-1)
            grad = grad.scatter_add(-1, index, -w.unsqueeze(-1))
            return grad.to(logits.dtype), None, None, None
        # d l / d f = (1 + nll)^(-alpha) * (softmax(f) - onehot(y))
        w = torch.where(valid, grad_out * torch.pow(1.0 + nll, -alpha), 0.0)
        grad = logits.to(acc) - lse.unsqueeze(-1)  # the one N x C buffer (for float32 logits)
        grad.exp_().mul_(w.unsqueeze(-1))
        grad.scatter_add_(-1, index, -w.unsqueeze(-1))
        return grad.to(logits.dtype), None, None, None


def tamed_cross_entropy(
    logits: Tensor,
    labels: Tensor,
    *,
    alpha: float = DEFAULT_TCE_ALPHA,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Tamed Cross Entropy (TCE) of Martinez & Stiefelhagen (GCPR 2018), robust to label noise.

    With :math:`q = \mathrm{softmax}(f)` and :math:`t = 1 - \log q_y \ge 1`:

    .. math::
        \ell_\alpha(f, y) = \frac{t^{1-\alpha} - 1}{1 - \alpha}, \qquad
        \ell_1(f, y) = \log t \;(\text{the limit } \alpha \to 1).

    ``alpha = 0`` is exactly cross-entropy. The gradient is the cross-entropy gradient scaled per item by
    :math:`t^{-\alpha}`, so confidently-wrong items (likely mislabelled) pull less. The paper's best trade-off,
    and the default, is ``alpha = 1.5``.

    Numerically: ``-log q_y`` comes from a log-softmax (never ``log(softmax)``), and the transform is evaluated as
    ``expm1((1-alpha) * log1p(nll)) / (1-alpha)``, continuous in ``alpha`` around 1.

    Args:
        logits: ``(..., C)`` raw scores (log-probabilities work too: the log-softmax of a log-softmax is itself).
        labels: ``(...)`` integer class indices in ``[0, C)`` or ``ignore_index``.
        alpha: taming strength, >= 0.
        ignore_index: label value whose items are skipped.
        reduction: ``"none"``, ``"sum"``, or ``"mean"`` over non-ignored items.

    Reference: M. Martinez and R. Stiefelhagen, *Taming the Cross Entropy Loss*, GCPR 2018, LNCS 11269,
    pp. 628-637, arXiv:1810.05075.
    """
    alpha = check_alpha(alpha)
    logits_2d, labels_1d, valid, bad = _flatten(
        logits, labels, ignore_index, reduction, "tamed_cross_entropy"
    )
    if alpha == 0.0:  # exactly cross-entropy, reduced by torch itself
        result = _nll(logits_2d, labels_1d, valid, reduction=reduction)
        result = result.reshape(labels.shape) if reduction == "none" else result
    else:
        if logits_2d.shape[-1] >= FUSED_TCE_MIN_CLASSES:
            target = torch.where(valid, labels_1d, 0)
            per_item = _TamedCEFunction.apply(logits_2d, target, valid, alpha)
        else:
            per_item = tame(_nll(logits_2d, labels_1d, valid), alpha)
        result = _reduce(per_item, valid, reduction, labels.shape)
    return _finish(result, logits, labels, bad, valid, ignore_index, "tamed_cross_entropy")


# --------------------------------------------------------------------------------------------------------------
# cross-entropy and the TCE paper's softmax baselines
# --------------------------------------------------------------------------------------------------------------
def cross_entropy(
    logits: Tensor,
    labels: Tensor,
    *,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Softmax cross-entropy :math:`-\log \mathrm{softmax}(f)_y`, with this module's conventions.

    Same values as :func:`torch.nn.functional.cross_entropy` on ``(N, C)`` inputs (``label_smoothing`` included),
    with the class dimension last, the input checks of this module, and float32 computation under autocast.
    """
    label_smoothing = check_label_smoothing(label_smoothing)
    logits_2d, labels_1d, valid, bad = _flatten(logits, labels, ignore_index, reduction, "cross_entropy")
    result = _nll(logits_2d, labels_1d, valid, label_smoothing, reduction)
    result = result.reshape(labels.shape) if reduction == "none" else result
    return _finish(result, logits, labels, bad, valid, ignore_index, "cross_entropy")


def softmax_mse(
    logits: Tensor,
    labels: Tensor,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Squared error between :math:`q = \mathrm{softmax}(f)` and the one-hot target, summed over classes.

    :math:`\ell = \sum_i (q_i - [i = y])^2 = \lVert q \rVert^2 - 2 q_y + 1`. Summing (not averaging) over the
    classes matches the gradient scale of Torch's ``MSECriterion`` baseline in the TCE paper.
    """
    logits_2d, labels_1d, valid, bad = _flatten(logits, labels, ignore_index, reduction, "softmax_mse")
    q = torch.softmax(logits_2d.to(_compute_dtype(logits_2d)), dim=-1)
    q_y = q.gather(-1, torch.where(valid, labels_1d, 0).unsqueeze(-1)).squeeze(-1)
    per_item = torch.where(valid, (q * q).sum(-1) - 2.0 * q_y + 1.0, 0.0)
    result = _reduce(per_item, valid, reduction, labels.shape)
    return _finish(result, logits, labels, bad, valid, ignore_index, "softmax_mse")


def softmax_mae(
    logits: Tensor,
    labels: Tensor,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Absolute error between :math:`q = \mathrm{softmax}(f)` and the one-hot target, summed over classes.

    Since :math:`\sum_i q_i = 1`, :math:`\ell = \sum_i |q_i - [i = y]| = 2 (1 - q_y)`, evaluated as
    ``-2 * expm1(-nll)`` from the log-softmax.
    """
    logits_2d, labels_1d, valid, bad = _flatten(logits, labels, ignore_index, reduction, "softmax_mae")
    per_item = -2.0 * torch.expm1(-_nll(logits_2d, labels_1d, valid))
    result = _reduce(per_item, valid, reduction, labels.shape)
    return _finish(result, logits, labels, bad, valid, ignore_index, "softmax_mae")
