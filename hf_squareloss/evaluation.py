"""What evaluation reports beside the training objective: the negative log-likelihood the model serves.

``eval_loss`` is the training objective (the square loss, TCE, ...), normalised as in training; it measures each loss
on its own scale, so two models trained with different losses, or one loss with different parameters, cannot be
compared on it (``exp(eval_loss)`` is a perplexity only for ``ce``). :class:`~hf_squareloss.SquareLossTrainer`
therefore also reports, for every head and every loss:

==========================  ==================================================================================
metric                      what it is
==========================  ==================================================================================
``eval_nll``                mean over the evaluated items of ``-log p(y)``, ``p`` the probabilities the model
                            serves (:func:`hf_squareloss.served_nll`: the softmax of the logits; for the square loss
                            ``softmax(logits / M)``; with a fitted temperature ``T``, divided by ``T``). Items: the
                            non-ignored labels (tokens for LM and token-classification heads, ``labels[..., 1:]``
                            for causal LMs). CTC heads: the CTC negative log-likelihood per utterance, divided by
                            its target length when the model's ``ctc_loss_reduction`` is ``"mean"``, averaged over
                            utterances.
``eval_perplexity``         ``exp(eval_nll)``, for language-model heads (causal, seq2seq, masked, aligned).
==========================  ==================================================================================

Unlike ``eval_loss`` (a mean of per-batch means, as transformers computes it), ``eval_nll`` is the exact mean over
all items of the evaluation set, over every process (the rows a distributed sampler repeats to even out the last
batch are dropped, as for predictions). ``test_`` (``predict``) likewise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from . import heads
from .registry import LossConfig
from .scores import served_nll

__all__ = ["LM_HEADS", "NllMeter", "nll_rows"]

LM_HEADS = ("causal_lm", "seq2seq", "masked_lm", "aligned_lm")
"""Head kinds whose evaluation also reports a perplexity."""

IGNORE_INDEX = -100


def nll_rows(
    head: heads.Head,
    logits: Tensor,
    labels: Tensor,
    config: LossConfig,
    *,
    temperature: float | None = None,
    input_lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Per example (row) of a batch: the summed negative log-likelihood of its items and their number, as float64.

    CTC: each utterance is one item, its CTC negative log-likelihood under ``softmax(logits / T)`` (divided by its
    target length for a ``"mean"`` head). Other heads: :func:`hf_squareloss.served_nll` of the aligned logits and
    labels (``-100`` ignored).
    """
    with torch.no_grad():
        if head.kind == "ctc":
            scaled = logits.float() / (1.0 if temperature is None else float(temperature))
            terms, _ = heads.ctc_loss(head, scaled, labels, input_lengths, per_utterance=True)
            return terms.double(), torch.ones_like(terms, dtype=torch.float64)
        logits, labels = heads.align(head, logits, labels)
        per_item = served_nll(logits, labels, config, temperature=temperature, ignore_index=IGNORE_INDEX)
        rows = labels.shape[0] if labels.dim() > 0 else 1
        valid = (labels != IGNORE_INDEX).reshape(rows, -1)
        sums = per_item.double().reshape(rows, -1).masked_fill(~valid, 0.0).sum(-1)
        return sums, valid.sum(-1).double()


class NllMeter:
    """Accumulates :func:`nll_rows` over an evaluation; ``gather`` (e.g. ``accelerator.gather_for_metrics``) brings
    every process's rows together before they are summed."""

    def __init__(self, head_kind: str, gather: Callable[[Any], Any] | None = None) -> None:
        self.head_kind = head_kind
        self.gather = gather
        self.total = 0.0
        self.count = 0.0

    def add(self, sums: Tensor, counts: Tensor) -> None:
        if self.gather is not None:
            sums, counts = self.gather((sums, counts))
        self.total += float(sums.double().sum())
        self.count += float(counts.double().sum())

    def metrics(self, prefix: str) -> dict[str, float]:
        """``{prefix}_nll`` (and ``{prefix}_perplexity`` for LM heads); empty when no item was seen."""
        if self.count <= 0:
            return {}
        nll = self.total / self.count
        out = {f"{prefix}_nll": nll}
        if self.head_kind in LM_HEADS:
            out[f"{prefix}_perplexity"] = math.exp(nll) if nll < 700 else math.inf
        return out
