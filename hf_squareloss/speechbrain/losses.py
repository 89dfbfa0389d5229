r"""Losses with SpeechBrain's signatures and semantics, for hyperpyyaml's ``!name:`` and SpeechBrain ``Brain`` code.

=============================  =====================================================  ===============================
function                       input                                                  drop-in for
=============================  =====================================================  ===============================
:func:`square_loss`            raw logits ``[B, T, C]`` or ``[B, C]``                  (needs raw logits, see below)
:func:`logits_loss`            raw logits; any registered ``loss_type``                ``nll_loss(log_softmax(x))``
:func:`tamed_nll_loss`         log-probabilities ``[B, T, C]`` or ``[B, C]``           ``speechbrain.nnet.losses.nll_loss``
:func:`tamed_ctc_loss`         log-probabilities ``[B, T, C]``                         ``speechbrain.nnet.losses.ctc_loss``
=============================  =====================================================  ===============================

Common semantics (those of ``speechbrain.nnet.losses``, see :mod:`.masking`): relative ``length`` masks the padded
frames (they contribute neither loss nor gradient), predictions and targets may differ by ``allowed_len_diff``
frames (the longer is cut), ``reduction`` is ``mean`` (per counted frame), ``batch`` (one value per utterance, as
SpeechBrain's metric objects need), ``batchmean`` (sum / batch size), ``sum`` or ``none`` (masked per-frame values).
With ``[B, C]`` inputs and ``[B]`` targets each utterance is one item; ``length`` is then not needed and ignored.

The square loss needs the **raw** decoder logits: it is not a function of the log-softmax (which forgets the logits'
offset). Inputs that are log-probabilities (every counted row's log-sum-exp is 0) are refused with a ``ValueError``
by :func:`square_loss`, :func:`logits_loss` and :class:`LogitsLoss` for the square loss; the softmax-based losses
give the same value on log-probabilities as on logits and accept both. Stock SpeechBrain recipes apply ``log_softmax`` before the sequence loss, so only the Tamed CE is a pure YAML
swap there (``seq_cost: !name:hf_squareloss.speechbrain.tamed_nll_loss``); for the square loss feed the output of the
decoder's linear layer to :func:`logits_loss` / :func:`square_loss` instead (``recipes/asr/README.md`` shows both).

Tamed CTC (:func:`tamed_ctc_loss`) is an extension of this package: the TCE transform of Martinez & Stiefelhagen
(GCPR 2018) applied to each utterance's CTC negative log-likelihood. No other toolkit provides it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import DEFAULT_TCE_ALPHA, check_alpha, check_label_smoothing, tame
from ..registry import LossConfig
from .masking import (
    absolute_lengths,
    check_lengths,
    check_reduction,
    length_mask,
    reduce_masked,
    truncate_time,
)

__all__ = ["LogitsLoss", "logits_loss", "square_loss", "tamed_ctc_loss", "tamed_nll_loss"]

# target value of the padded frames handed to the registry's losses (and F.nll_loss's own "skip" value)
IGNORE_INDEX = -100
# a counted -log p below this means the input was not log-probabilities
_NEGATIVE_NLL_TOLERANCE = 1e-3
_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


# --------------------------------------------------------------------------------------------------------------
# shared plumbing
# --------------------------------------------------------------------------------------------------------------
def _framewise(
    predictions: Tensor,
    targets: Tensor,
    length: Tensor | None,
    allowed_len_diff: int,
    where: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """Check and align ``predictions`` and ``targets``; return ``(predictions, targets, mask)``.

    ``[B, T, C]`` with ``[B, T']``: truncated to a common ``T`` and masked by ``length``.
    ``[B, C]`` with ``[B]``: one item per utterance, all counted.
    """
    if not isinstance(predictions, Tensor) or not isinstance(targets, Tensor):
        raise ValueError(
            f"{where}: predictions and targets must be tensors, got {type(predictions).__name__} and "
            f"{type(targets).__name__}"
        )
    if not predictions.is_floating_point():
        raise ValueError(f"{where}: predictions must be a floating-point tensor, got {predictions.dtype}")
    if targets.dtype not in _INT_DTYPES:
        raise ValueError(f"{where}: targets must be an integer tensor of class indices, got {targets.dtype}")
    if predictions.dim() == 3:
        if targets.dim() != 2 or targets.shape[0] != predictions.shape[0]:
            raise ValueError(
                f"{where}: predictions [B, T, C] = {tuple(predictions.shape)} need targets [B, T], got "
                f"{tuple(targets.shape)}"
            )
        predictions, targets = truncate_time(predictions, targets, allowed_len_diff, where)
        check_lengths(length, predictions.shape[0], where)
        mask = length_mask(length, predictions.shape[0], predictions.shape[1], predictions.device)
    elif predictions.dim() == 2:
        if targets.shape != predictions.shape[:1]:
            raise ValueError(
                f"{where}: predictions [B, C] = {tuple(predictions.shape)} need targets [B], got "
                f"{tuple(targets.shape)}"
            )
        mask = torch.ones(predictions.shape[0], dtype=torch.bool, device=predictions.device)
    else:
        raise ValueError(
            f"{where}: predictions must be [B, T, C] or [B, C] with the classes last, got shape "
            f"{tuple(predictions.shape)}"
        )
    return predictions, targets.long(), mask


# --------------------------------------------------------------------------------------------------------------
# any registered loss on raw logits
# --------------------------------------------------------------------------------------------------------------
def _registered_loss(
    config: LossConfig,
    logits: Tensor,
    targets: Tensor,
    length: Tensor | None,
    allowed_len_diff: int,
    reduction: str,
    where: str,
) -> Tensor:
    check_reduction(reduction, where)
    logits, targets, mask = _framewise(logits, targets, length, allowed_len_diff, where)
    if config.spec.raw_logits:
        _refuse_log_probabilities(logits, mask, where)
    labels = torch.where(mask, targets, IGNORE_INDEX)
    per_frame = config(logits, labels, ignore_index=IGNORE_INDEX, reduction="none")
    return reduce_masked(per_frame, mask.to(per_frame.dtype), reduction)


# |log-sum-exp| of a row of log-probabilities stays far below this (float32 rounding); raw logits are never all near 0
_LOG_PROBABILITY_TOLERANCE = 1e-3


def _refuse_log_probabilities(logits: Tensor, mask: Tensor, where: str) -> None:
    """``ValueError`` when every counted row is a log-probability vector (its log-sum-exp is 0)."""
    with torch.no_grad():
        rows = logits.detach()[mask]
        if rows.numel() == 0:
            return
        lse = torch.logsumexp(rows.float(), dim=-1)
        if bool((lse.abs() <= _LOG_PROBABILITY_TOLERANCE).all()):
            raise ValueError(
                f"{where}: the inputs are log-probabilities (the log-sum-exp of every counted row is 0, max "
                f"|lse| = {float(lse.abs().max()):.2g}), but this loss needs the raw logits: a log-softmax "
                "forgets their offset, which the square loss trains. Feed the output of the last linear layer, "
                "before the log-softmax (in a SpeechBrain classifier ending in "
                "`speechbrain.nnet.activations.Softmax(apply_log=True)`, compute the loss on the output of the "
                "layer before it; docs/speechbrain_classification.md shows how)."
            )


def logits_loss(
    logits: Tensor,
    targets: Tensor,
    length: Tensor | None = None,
    allowed_len_diff: int = 3,
    reduction: str = "mean",
    *,
    loss_type: str = "square",
    label_smoothing: float = 0.0,
    **params: Any,
) -> Tensor:
    r"""Any loss of :func:`hf_squareloss.loss_types` on **raw** logits, with SpeechBrain's masking and reductions.

    The per-frame loss is the registry's (:class:`hf_squareloss.LossConfig`; its ``spec.formula`` for each loss):
    ``ce`` is :math:`-\log\mathrm{softmax}(f)_y` (so ``logits_loss(f, y, loss_type="ce")`` equals
    ``nll_loss(log_softmax(f), y)``), ``square`` is :math:`\frac{1}{C}(k (f_y - M)^2 + \sum_{i \ne y} f_i^2)`
    (Hui & Belkin, ICLR 2021), ``tce`` the Tamed CE of :math:`\mathrm{softmax}(f)` (Martinez & Stiefelhagen,
    GCPR 2018), and so on for every registered loss. ``params`` are the loss's parameters by their keyword in the
    registry (``k``, ``M``, ``preset``; ``alpha``; ``q``; ``gamma``...); ``None`` or absent means the registry's
    default. ``k``/``M`` not given come from ``preset`` or, failing that, from the number of classes
    (:func:`hf_squareloss.square_loss_preset`).

    Args:
        logits: ``[B, T, C]`` or ``[B, C]`` raw scores of the output layer (no softmax).
        targets: ``[B, T]`` or ``[B]`` class indices (padded frames may hold anything).
        length: ``[B]`` relative lengths of the targets (SpeechBrain's ``tokens_eos_lens``).
        allowed_len_diff: tolerated difference of ``T`` between logits and targets.
        reduction: ``mean | batch | batchmean | sum | none``.
        loss_type, label_smoothing, params: the loss and its hyper-parameters (registry's validation: unknown
            names, bad values and label smoothing on a loss that cannot honour it raise).
    """
    where = f"logits_loss[{loss_type}]"
    num_classes = logits.shape[-1] if isinstance(logits, Tensor) and logits.dim() >= 1 else None
    config = LossConfig.resolve(loss_type, num_classes=num_classes, label_smoothing=label_smoothing, **params)
    return _registered_loss(config, logits, targets, length, allowed_len_diff, reduction, where)


def square_loss(
    logits: Tensor,
    targets: Tensor,
    length: Tensor | None = None,
    allowed_len_diff: int = 3,
    reduction: str = "mean",
    *,
    k: float | None = None,
    M: float | None = None,
    preset: str | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""Rescaled square loss of Hui & Belkin (ICLR 2021) on **raw** logits, with SpeechBrain's semantics.

    Per counted frame with logits :math:`f \in \mathbb{R}^C` and target :math:`y`:

    .. math::
        \ell(f, y) = \frac{1}{C}\Big(k\,(f_y - M)^2 + \sum_{i \ne y} f_i^2\Big)

    The paper uses ``(k, M) = (1, 15)`` on TIMIT and WSJ and ``(15, 30)`` on LibriSpeech (``preset="timit"``,
    ``"wsj"``, ``"librispeech"``); without ``k``, ``M`` or ``preset`` they follow from ``C``
    (:func:`hf_squareloss.square_loss_preset`). Label smoothing is refused: the loss has no smoothed form here.

    Reference: L. Hui and M. Belkin, *Evaluation of Neural Architectures Trained with Square Loss vs
    Cross-Entropy in Classification Tasks*, ICLR 2021, arXiv:2006.07322.
    """
    return logits_loss(
        logits,
        targets,
        length,
        allowed_len_diff,
        reduction,
        loss_type="square",
        k=k,
        M=M,
        preset=preset,
        label_smoothing=label_smoothing,
    )


class LogitsLoss(nn.Module):
    """:func:`logits_loss` with its loss resolved once, for ``!new:`` in YAML and for recipes.

    ``params`` are the loss's parameters by their keyword (``k``, ``M``, ``preset``, ``alpha``, ``q``, ``gamma``...;
    ``None`` for the registry's default), so one YAML block serves every loss type.
    ``loss(logits, targets, length)`` as SpeechBrain's losses; :attr:`config` is the registry's
    :class:`hf_squareloss.LossConfig` (its ``spec.outputs`` says whether the logits are probabilities' logits or
    square-loss scores, which :class:`hf_squareloss.speechbrain.DecoderLogProbs` needs for decoding).
    """

    def __init__(
        self,
        loss_type: str,
        *,
        num_classes: int | None = None,
        label_smoothing: float = 0.0,
        allowed_len_diff: int = 3,
        reduction: str = "mean",
        **params: Any,
    ) -> None:
        super().__init__()
        self.config = LossConfig.resolve(
            loss_type, num_classes=num_classes, label_smoothing=label_smoothing, **params
        )
        self.num_classes = num_classes
        self.allowed_len_diff = int(allowed_len_diff)
        self.reduction = check_reduction(reduction, "LogitsLoss")

    def forward(
        self, logits: Tensor, targets: Tensor, length: Tensor | None = None, reduction: str | None = None
    ) -> Tensor:
        where = f"LogitsLoss[{self.config.loss_type}]"
        if self.num_classes is not None and logits.shape[-1] != self.num_classes:
            raise ValueError(
                f"{where}: built for {self.num_classes} classes, got logits with {logits.shape[-1]} in the last "
                f"dimension (shape {tuple(logits.shape)})"
            )
        return _registered_loss(
            self.config,
            logits,
            targets,
            length,
            self.allowed_len_diff,
            self.reduction if reduction is None else reduction,
            where,
        )

    def hidden_states_loss(
        self,
        hidden: Tensor,
        layer: nn.Module,
        targets: Tensor,
        length: Tensor | None = None,
        reduction: str | None = None,
    ) -> Tensor:
        """The loss of ``layer(hidden)`` without making those logits: :func:`hf_squareloss.linear_square_loss` for
        the square loss (the layer's Gram matrix), blocks of frames for ``ce`` and ``tce``. Same value and
        gradients as ``self(layer(hidden), targets, length)``.

        ``hidden`` is ``[B, T, d]`` (or ``[B, d]``), ``layer`` an ``nn.Linear`` or a SpeechBrain
        ``speechbrain.nnet.linear.Linear`` (whose ``nn.Linear`` is ``layer.w``).
        """
        from ..registry import hidden_state_function

        where = f"LogitsLoss[{self.config.loss_type}].hidden_states_loss"
        linear = getattr(layer, "w", layer)
        if not isinstance(linear, nn.Linear):
            raise ValueError(
                f"{where}: layer must be an nn.Linear or a SpeechBrain Linear, got {type(layer).__name__}"
            )
        if self.num_classes is not None and linear.out_features != self.num_classes:
            raise ValueError(
                f"{where}: built for {self.num_classes} classes, got a layer with {linear.out_features} outputs"
            )
        reduction = check_reduction(self.reduction if reduction is None else reduction, where)
        hidden, targets, mask = _framewise(hidden, targets, length, self.allowed_len_diff, where)
        labels = torch.where(mask, targets, IGNORE_INDEX)
        per_frame = hidden_state_function(self.config.loss_type)(
            hidden,
            linear.weight,
            labels,
            linear.bias,
            ignore_index=IGNORE_INDEX,
            reduction="none",
            **self.config.params,
        )
        return reduce_masked(per_frame, mask.to(per_frame.dtype), reduction)

    def extra_repr(self) -> str:
        return f"{self.config.describe()}, reduction={self.reduction!r}"


# --------------------------------------------------------------------------------------------------------------
# Tamed CE on log-probabilities: drop-in for speechbrain.nnet.losses.nll_loss
# --------------------------------------------------------------------------------------------------------------
def tamed_nll_loss(
    log_probabilities: Tensor,
    targets: Tensor,
    length: Tensor | None = None,
    label_smoothing: float = 0.0,
    allowed_len_diff: int = 3,
    weight: Tensor | None = None,
    reduction: str = "mean",
    *,
    alpha: float = DEFAULT_TCE_ALPHA,
) -> Tensor:
    r"""Tamed Cross Entropy on log-probabilities: a drop-in for ``speechbrain.nnet.losses.nll_loss``.

    Same arguments, in the same order, plus ``alpha``. Per counted frame, with :math:`\text{nll} = -\log p_y`
    (``weight[y]`` multiplies it when class weights are given):

    .. math::
        \ell_\alpha = \frac{(1 + \text{nll})^{1-\alpha} - 1}{1 - \alpha}, \qquad
        \ell_1 = \log(1 + \text{nll}), \qquad \ell_0 = \text{nll}.

    ``alpha = 0`` is exactly ``nll_loss`` (same operations, label smoothing included). For ``alpha > 0`` label
    smoothing is refused (the TCE paper defines no smoothed form) and the inputs must be log-probabilities
    (``-log p >= 0``); an input that is not raises ``ValueError``. Targets equal to -100 count as frames but add
    no loss, as in ``nll_loss``. The paper's default ``alpha = 1.5``.

    Reference: M. Martinez and R. Stiefelhagen, *Taming the Cross Entropy Loss*, GCPR 2018, arXiv:1810.05075.
    """
    where = "tamed_nll_loss"
    alpha = check_alpha(alpha)
    label_smoothing = check_label_smoothing(label_smoothing)
    if label_smoothing and alpha:
        raise ValueError(
            f"{where}: label smoothing ({label_smoothing}) cannot be honoured by the Tamed CE (alpha={alpha}); "
            "set label_smoothing to 0, or alpha to 0 for plain nll_loss with label smoothing"
        )
    check_reduction(reduction, where)
    log_probabilities, targets, mask = _framewise(log_probabilities, targets, length, allowed_len_diff, where)
    num_classes = log_probabilities.shape[-1]
    skipped = targets == IGNORE_INDEX
    out_of_range = ~skipped & mask & ((targets < 0) | (targets >= num_classes))
    if bool(out_of_range.any()):
        wrong = targets[out_of_range]
        raise ValueError(
            f"{where}: {wrong.numel()} target(s) outside [0, {num_classes - 1}] (C={num_classes}): "
            f"min {int(wrong.min())}, max {int(wrong.max())}"
        )
    if weight is not None and (weight.dim() != 1 or weight.shape[0] != num_classes):
        raise ValueError(f"{where}: weight must have shape ({num_classes},), got {tuple(weight.shape)}")
    safe = torch.where(mask & ~skipped, targets, 0)
    nll = -log_probabilities.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    counted = mask & ~skipped
    if alpha:
        below = counted & (nll < -_NEGATIVE_NLL_TOLERANCE)
        if bool(below.any()):
            raise ValueError(
                f"{where}: inputs are not log-probabilities: {int(below.sum())} counted frame(s) have "
                f"log p_y > 0 (max {float(-nll[below].min()):.3g}); apply log_softmax first, or use "
                "logits_loss(loss_type='tce') on raw logits"
            )
        per_frame = tame(nll.clamp_min(0.0), alpha)
    else:
        per_frame = nll
    if weight is not None:
        per_frame = per_frame * weight.to(per_frame.dtype)[safe]
    per_frame = torch.where(counted, per_frame, 0.0)
    maskf = mask.to(per_frame.dtype)
    loss = reduce_masked(per_frame, maskf, reduction)
    if not label_smoothing:
        return loss
    # nll_loss's smoothing: mix with the mean log-probability over the classes, on every counted frame
    if log_probabilities.dim() == 3:
        mean_log_p = log_probabilities.transpose(1, -1).mean(dim=1)
    else:
        mean_log_p = log_probabilities.mean(dim=1)
    regulariser = reduce_masked(mean_log_p * maskf, maskf, reduction)
    return -label_smoothing * regulariser + (1 - label_smoothing) * loss


# --------------------------------------------------------------------------------------------------------------
# Tamed CTC (this package's extension)
# --------------------------------------------------------------------------------------------------------------
def tamed_ctc_loss(
    log_probs: Tensor,
    targets: Tensor,
    input_lens: Tensor,
    target_lens: Tensor,
    blank_index: int,
    reduction: str = "mean",
    *,
    alpha: float,
) -> Tensor:
    r"""Tamed CTC: the TCE transform applied to each utterance's CTC negative log-likelihood.

    Same arguments as ``speechbrain.nnet.losses.ctc_loss`` plus ``alpha`` (required: there is no established
    default for sequences). For utterance :math:`b` with CTC negative log-likelihood
    :math:`\text{nll}_b = -\log p_{\text{CTC}}(y_b \mid x_b)` (``zero_infinity``: an impossible alignment gives 0)
    and :math:`L_b` target tokens:

    .. math::
        \ell_b = \frac{(1 + \text{nll}_b)^{1-\alpha} - 1}{1 - \alpha}
        \quad(\log(1 + \text{nll}_b) \text{ at } \alpha = 1)

    normalised as ``ctc_loss`` is: ``mean`` averages :math:`\ell_b / \max(L_b, 1)` over the batch, ``batch``
    returns :math:`\ell_b / L_b`, ``batchmean`` :math:`\sum_b \ell_b / B`, ``sum`` :math:`\sum_b \ell_b`,
    ``none`` the :math:`\ell_b`. ``alpha = 0`` is exactly ``ctc_loss``.

    The gradient is CTC's scaled by :math:`(1 + \text{nll}_b)^{-\alpha}` per utterance: utterances the model
    finds very unlikely (e.g. wrongly transcribed ones) pull less. Since :math:`\text{nll}_b` grows with the
    utterance length, the scale is much smaller than for per-token TCE: use small ``alpha`` (e.g. 0.1-0.5) or a
    larger learning rate. This is an extension of this package; the transform is Martinez & Stiefelhagen's
    (*Taming the Cross Entropy Loss*, GCPR 2018, arXiv:1810.05075), CTC is Graves et al. (ICML 2006).

    Args:
        log_probs: ``[B, T, C]`` log-probabilities (log-softmax of the CTC head).
        targets: ``[B, L]`` token indices without blanks.
        input_lens: ``[B]`` relative lengths of ``log_probs`` (rounded to frames as ``ctc_loss`` does).
        target_lens: ``[B]`` relative lengths of ``targets``.
        blank_index: the blank's class index.
        reduction: ``mean | batch | batchmean | sum | none``.
        alpha: taming strength >= 0.
    """
    where = "tamed_ctc_loss"
    alpha = check_alpha(alpha)
    check_reduction(reduction, where)
    if not isinstance(log_probs, Tensor) or log_probs.dim() != 3 or not log_probs.is_floating_point():
        shape = tuple(log_probs.shape) if isinstance(log_probs, Tensor) else type(log_probs).__name__
        raise ValueError(f"{where}: log_probs must be a float tensor [B, T, C], got {shape}")
    batch_size, num_frames, num_classes = log_probs.shape
    if not isinstance(targets, Tensor) or targets.dtype not in _INT_DTYPES or targets.dim() != 2:
        raise ValueError(f"{where}: targets must be an integer tensor [B, L] of token indices")
    if targets.shape[0] != batch_size:
        raise ValueError(
            f"{where}: log_probs hold {batch_size} utterances and targets {targets.shape[0]} "
            f"(shapes {tuple(log_probs.shape)} and {tuple(targets.shape)})"
        )
    check_lengths(input_lens, batch_size, where, "input_lens")
    check_lengths(target_lens, batch_size, where, "target_lens")
    if not 0 <= int(blank_index) < num_classes:
        raise ValueError(
            f"{where}: blank_index={blank_index} outside [0, {num_classes - 1}] (C={num_classes})"
        )
    blank_index = int(blank_index)
    frames = absolute_lengths(input_lens, num_frames)
    tokens = absolute_lengths(target_lens, targets.shape[1])
    positions = torch.arange(targets.shape[1], device=targets.device).unsqueeze(0)
    counted = positions < tokens.to(targets.device).unsqueeze(1)
    bad = counted & ((targets < 0) | (targets >= num_classes) | (targets == blank_index))
    if bool(bad.any()):
        wrong = sorted(set(targets[bad].tolist()))[:10]
        raise ValueError(
            f"{where}: targets must be token indices in [0, {num_classes - 1}] other than blank_index="
            f"{blank_index}; found {wrong}"
        )
    time_major = log_probs.transpose(0, 1)
    if alpha == 0.0:  # exactly SpeechBrain's ctc_loss
        torch_reduction = {"batchmean": "sum", "batch": "none"}.get(reduction, reduction)
        loss = F.ctc_loss(
            time_major, targets, frames, tokens, blank_index, zero_infinity=True, reduction=torch_reduction
        )
        if reduction == "batchmean":
            return loss / batch_size
        if reduction == "batch":
            return loss / tokens.to(loss.dtype)
        return loss
    nll = F.ctc_loss(time_major, targets, frames, tokens, blank_index, zero_infinity=True, reduction="none")
    if bool((nll < -_NEGATIVE_NLL_TOLERANCE).any()):
        raise ValueError(
            f"{where}: negative CTC negative log-likelihood ({float(nll.min()):.3g}): log_probs are not "
            "log-probabilities; apply log_softmax to the CTC head's output"
        )
    tamed = tame(nll.clamp_min(0.0), alpha)
    if reduction == "none":
        return tamed
    if reduction == "sum":
        return tamed.sum()
    if reduction == "batchmean":
        return tamed.sum() / batch_size
    if reduction == "batch":
        return tamed / tokens.to(tamed.dtype)
    return (tamed / tokens.clamp_min(1).to(tamed.dtype)).mean()
