"""SpeechBrain's conventions for padded batches: relative lengths, masks, truncation and reductions.

SpeechBrain pads every batch to its longest item and describes each utterance by its *relative* length
``length[b] in (0, 1]`` (fraction of the padded time axis). The losses of :mod:`.losses` follow the same rules as
``speechbrain.nnet.losses``:

* frame ``t`` of utterance ``b`` counts when ``t < length[b] * T - 1e-6``, i.e. the relative length is turned into
  a number of frames by rounding up (:func:`length_mask`);
* CTC turns relative lengths into frame counts by rounding to nearest (:func:`absolute_lengths`);
* predictions and targets whose time axes differ by at most ``allowed_len_diff`` are cut to the shorter one
  (:func:`truncate_time`);
* ``reduction`` is one of ``mean`` (sum over counted frames / number of counted frames), ``batch`` (one value per
  utterance: its sum / its counted frames), ``batchmean`` (sum / batch size), ``sum`` and ``none`` (the masked
  per-frame values), see :func:`reduce_masked`.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "REDUCTIONS",
    "absolute_lengths",
    "check_lengths",
    "check_reduction",
    "length_mask",
    "reduce_masked",
    "truncate_time",
]

REDUCTIONS = ("mean", "batch", "batchmean", "sum", "none")

# SpeechBrain subtracts this from ``length * T`` before comparing frame indices with it
_LENGTH_EPS = 1e-6
# relative lengths slightly above 1 come from float rounding of ``len / max_len``; above this they are a bug
_LENGTH_TOLERANCE = 1e-3


def check_reduction(reduction: str, where: str) -> str:
    """Return ``reduction`` or raise ``ValueError`` listing the valid ones."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"{where}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def check_lengths(length: Tensor | None, batch_size: int, where: str, name: str = "length") -> None:
    """Check that ``length`` is ``None`` or a float tensor of ``batch_size`` relative lengths in ``[0, 1]``."""
    if length is None:
        return
    if not isinstance(length, Tensor):
        raise ValueError(f"{where}: {name} must be a tensor of relative lengths, got {type(length).__name__}")
    if not length.is_floating_point():
        raise ValueError(
            f"{where}: {name} must hold relative lengths (floats in (0, 1], SpeechBrain's convention), "
            f"got dtype {length.dtype}"
        )
    if length.dim() != 1 or length.shape[0] != batch_size:
        raise ValueError(
            f"{where}: {name} must have shape ({batch_size},) (one relative length per utterance), "
            f"got {tuple(length.shape)}"
        )
    bad = (length < 0) | (length > 1 + _LENGTH_TOLERANCE) | torch.isnan(length)
    if bool(bad.any()):
        raise ValueError(
            f"{where}: {name} must hold relative lengths in [0, 1]; got {length[bad].tolist()} "
            "(absolute lengths must be divided by the padded length)"
        )


def length_mask(length: Tensor | None, batch_size: int, max_len: int, device: torch.device) -> Tensor:
    """Boolean ``[batch_size, max_len]`` mask of the frames that count: ``t < length[b] * max_len - 1e-6``.

    With ``length=None`` every frame counts.
    """
    if length is None:
        return torch.ones(batch_size, max_len, dtype=torch.bool, device=device)
    bound = (length.to(device) * max_len - _LENGTH_EPS).unsqueeze(1)
    frames = torch.arange(max_len, device=device, dtype=bound.dtype).unsqueeze(0)
    return frames < bound


def absolute_lengths(length: Tensor, max_len: int) -> Tensor:
    """Frame counts from relative lengths, rounded to nearest, as SpeechBrain's ``ctc_loss`` does."""
    return (length * max_len).round().int()


def truncate_time(
    predictions: Tensor, targets: Tensor, allowed_len_diff: int, where: str
) -> tuple[Tensor, Tensor]:
    """Cut ``predictions [B, T, ...]`` and ``targets [B, T', ...]`` to a common time length ``min(T, T')``.

    Raises ``ValueError`` when the lengths differ by more than ``allowed_len_diff`` frames.
    """
    diff = predictions.shape[1] - targets.shape[1]
    if diff == 0:
        return predictions, targets
    if abs(diff) > allowed_len_diff:
        raise ValueError(
            f"{where}: predictions have {predictions.shape[1]} frames and targets {targets.shape[1]}; they may "
            f"differ by at most allowed_len_diff={allowed_len_diff}"
        )
    steps = min(predictions.shape[1], targets.shape[1])
    return predictions[:, :steps], targets[:, :steps]


def reduce_masked(loss: Tensor, mask: Tensor, reduction: str) -> Tensor:
    """Reduce a per-frame ``loss [B, ...]`` whose uncounted frames are already zero, by SpeechBrain's rules.

    ``mask`` has the shape of ``loss`` (1 where the frame counts). ``batch`` divides each utterance's sum by its own
    number of counted frames (``nan`` for an utterance without any, as in SpeechBrain).
    """
    batch_size = loss.shape[0]
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / mask.sum()
    if reduction == "batchmean":
        return loss.sum() / batch_size
    if reduction == "batch":
        return loss.reshape(batch_size, -1).sum(1) / mask.reshape(batch_size, -1).sum(1)
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
