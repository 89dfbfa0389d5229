"""SpeechBrain hook: the square loss, the Tamed CE and Tamed CTC with SpeechBrain's signatures and semantics.

Use in hyperpyyaml (see ``recipes/asr/README.md``)::

    # stock recipe, decoder loss on log-probabilities: a pure YAML swap
    seq_cost: !name:hf_squareloss.speechbrain.tamed_nll_loss
        alpha: 1.5

    # square loss: needs the decoder's raw logits (the output of its linear layer, before log_softmax)
    seq_cost: !name:hf_squareloss.speechbrain.square_loss
        preset: wsj            # (k, M) = (1, 15)

    # CTC, tamed (this package's extension; alpha = 0 is SpeechBrain's ctc_loss)
    ctc_cost: !name:hf_squareloss.speechbrain.tamed_ctc_loss
        blank_index: 0
        alpha: 0.2

Modules: :mod:`.losses` (the losses), :mod:`.masking` (SpeechBrain's length/reduction conventions),
:mod:`.scoring` (log-probabilities for beam search from a square-loss decoder); for the recipes of ``recipes/asr``:
:mod:`.units` (tokenizers), :mod:`.manifests` (CSV manifests), :mod:`.audio` (audio and SPHERE headers),
:mod:`.asr_brain` (the joint CTC-attention ``Brain``) and :mod:`.recipe` (the common ``train.py``). Importing this
package does not import SpeechBrain; :mod:`.asr_brain` and :mod:`.recipe` do. See ``recipes/asr/README.md``, and
``recipes/fsdd/README.md`` for classification recipes.
"""

from __future__ import annotations

from .losses import LogitsLoss, logits_loss, square_loss, tamed_ctc_loss, tamed_nll_loss
from .masking import REDUCTIONS
from .scoring import DEFAULT_SCORE_SCALE, DecoderLogProbs, fit_score_scale

__all__ = [
    "DEFAULT_SCORE_SCALE",
    "REDUCTIONS",
    "DecoderLogProbs",
    "LogitsLoss",
    "fit_score_scale",
    "logits_loss",
    "square_loss",
    "tamed_ctc_loss",
    "tamed_nll_loss",
]
