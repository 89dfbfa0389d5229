r"""Decoding a model whose decoder was trained with any registered loss: log-probabilities for beam search.

SpeechBrain's searchers (``S2STransformerBeamSearcher``, ``S2SRNNBeamSearcher``, their greedy variants) call the
decoder's output layer ``fc`` and treat ``log_softmax(fc(h))`` as next-token log-probabilities: they add them along
a hypothesis, mix them with CTC prefix scores (``(1 - w) * attention + w * ctc``), compare the end-of-sentence
score with the best one (``eos_threshold``) and normalise by length. That is sound for a decoder trained with
cross-entropy or the Tamed CE, whose softmax estimates probabilities.

A decoder trained with the **square loss** outputs scores :math:`f` whose training target is :math:`M` for the
true token and 0 for the others (Hui & Belkin, ICLR 2021): their softmax is not a probability of anything, and its
scale is set by ``M`` and by how well the model fits, not by any likelihood. Mixing it with CTC log-probabilities
would weigh the two arbitrarily. :class:`DecoderLogProbs` therefore maps the normalised scores
:math:`s = f / M` (1 for a perfectly fitted true token, 0 for the others) to a distribution

.. math::
    \log p(c \mid \text{prefix}) = \beta s_c - \log \sum_{c'} e^{\beta s_{c'}}

whose single sharpness :math:`\beta` (nats of log-odds between a perfectly fitted token and any other) is fitted
by maximum likelihood on held-out teacher-forced decoder outputs (:func:`fit_score_scale`; the problem is concave
in :math:`\beta`, the maximiser unique). This is temperature scaling (Guo et al., *On Calibration of Modern
Neural Networks*, ICML 2017) applied to square-loss scores; it keeps the ranking of the tokens (the argmax, Hui &
Belkin's prediction rule) and makes the attention scores log-probabilities again, so that CTC weights, length
normalisation and the end-of-sentence threshold keep their meaning. For ``probabilities`` losses the module is the
plain ``log_softmax`` of the logits.

Wrap the output layer once and give the wrapper to the searchers in place of the bare layer::

    seq_log_probs: !new:hf_squareloss.speechbrain.DecoderLogProbs
        linear: !ref <seq_lin>
        loss_type: !ref <loss_type>
        M: !ref <M>
    test_search: !new:speechbrain.decoders.S2STransformerBeamSearcher
        modules: [!ref <Transformer>, !ref <seq_log_probs>]
        ...

The searchers apply ``log_softmax`` once more; on log-probabilities that is the identity.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..calibration import fit_temperature
from ..registry import LossConfig
from ..scores import logits_to_scores

__all__ = ["DEFAULT_SCORE_SCALE", "DecoderLogProbs", "fit_score_scale"]

DEFAULT_SCORE_SCALE = 10.0
"""Sharpness used before calibration: 10 nats between a perfectly fitted token and any other."""

# search interval of the sharpness (nats); the upper end caps the estimate on separable data
_SCALE_RANGE = (1e-2, 1e3)


class DecoderLogProbs(nn.Module):
    """A decoder output layer that returns next-token log-probabilities whatever loss trained it.

    Args:
        linear: the output layer (e.g. ``speechbrain.nnet.linear.Linear``); its parameters stay shared.
        loss_type: a registered loss type (or pass ``config``); ``k``, ``M``, ``preset``, ``alpha``, ``num_classes``
            resolve it as :meth:`hf_squareloss.LossConfig.resolve` does.
        config: an already resolved :class:`hf_squareloss.LossConfig` (instead of ``loss_type``).
        scale: sharpness :math:`\\beta` of the score distribution (only used for ``scores`` losses).

    The sharpness is part of the module's state (``state_dict``), so a checkpoint keeps the calibrated value.
    """

    def __init__(
        self,
        linear: nn.Module,
        loss_type: str | None = None,
        *,
        config: LossConfig | None = None,
        num_classes: int | None = None,
        k: float | None = None,
        M: float | None = None,
        preset: str | None = None,
        alpha: float | None = None,
        scale: float = DEFAULT_SCORE_SCALE,
    ) -> None:
        super().__init__()
        if (config is None) == (loss_type is None):
            raise ValueError("DecoderLogProbs: give exactly one of loss_type and config")
        if config is None:
            config = LossConfig.resolve(
                loss_type, num_classes=num_classes, k=k, M=M, preset=preset, alpha=alpha
            )
        self.linear = linear
        self.config = config
        self.scale = _check_scale(scale)

    @property
    def outputs_scores(self) -> bool:
        """True when the wrapped layer was trained to output scores (square loss) rather than logits."""
        return self.config.spec.outputs == "scores"

    @property
    def w(self) -> nn.Module:
        """The inner ``torch.nn.Linear`` (SpeechBrain's searchers read ``fc.w.out_features``)."""
        inner = getattr(self.linear, "w", self.linear)
        return inner

    def normalised_scores(self, logits: Tensor) -> Tensor:
        """``logits / M`` for a ``scores`` loss (see :func:`hf_squareloss.logits_to_scores`)."""
        return logits_to_scores(logits, self.config)

    def log_probs_from_logits(self, logits: Tensor) -> Tensor:
        """Log-probabilities from the output layer's raw ``logits`` (classes last), in float32 or wider."""
        logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        if self.outputs_scores:
            return torch.log_softmax(self.scale * self.normalised_scores(logits), dim=-1)
        return torch.log_softmax(logits, dim=-1)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.log_probs_from_logits(self.linear(hidden))

    def get_extra_state(self) -> dict[str, Any]:
        return {"scale": self.scale, "loss": self.config.to_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        saved = LossConfig.from_dict(state["loss"])
        if not saved.same_loss(self.config):
            raise ValueError(
                f"DecoderLogProbs: the checkpoint was trained with {saved.describe()}, this model is set up for "
                f"{self.config.describe()}"
            )
        self.scale = _check_scale(state["scale"])

    def extra_repr(self) -> str:
        scale = f", scale={self.scale:.4g}" if self.outputs_scores else ""
        return f"{self.config.describe()}{scale}"


def _check_scale(scale: float) -> float:
    value = float(scale)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"score scale must be a finite number > 0, got {scale!r}")
    return value


def fit_score_scale(scores: Tensor, targets: Tensor, *, iterations: int = 100) -> float:
    r"""Maximum-likelihood sharpness :math:`\beta` of ``log_softmax(beta * scores)`` for the ``targets``.

    This is temperature scaling with :math:`\beta = 1/T` (:func:`hf_squareloss.calibration.fit_temperature`: the
    mean log-likelihood is concave in :math:`\beta`, its maximiser unique), searched in ``[0.01, 1000]``. The ends
    are returned when the maximum lies outside: ``1000`` means the held-out tokens are separated almost perfectly,
    ``0.01`` that the true tokens score below average.

    Args:
        scores: ``[N, C]`` normalised scores of counted decoder steps (e.g. ``logits / M``).
        targets: ``[N]`` the reference tokens.
    """
    if scores.dim() != 2 or targets.shape != scores.shape[:1]:
        raise ValueError(
            f"fit_score_scale: need scores [N, C] and targets [N], got {tuple(scores.shape)} and "
            f"{tuple(targets.shape)}"
        )
    if scores.shape[0] == 0:
        raise ValueError("fit_score_scale: no decoder steps to calibrate on")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("fit_score_scale: scores contain NaN or Inf")
    low, high = _SCALE_RANGE
    fit = fit_temperature(scores, targets, bounds=(1.0 / high, 1.0 / low), max_iterations=iterations)
    if fit.status == "separable":
        return high
    if fit.status == "inverted":
        return low
    return 1.0 / fit.temperature
