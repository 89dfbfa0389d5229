"""The losses beside the rescaled square loss and the Tamed CE, one module each (functional form and reference).

Each follows the conventions of :mod:`hf_squareloss.functional`: ``(..., C)`` logits with the classes last,
``(...)`` integer labels, ``ignore_index``, ``reduction``, float32 computation under autocast, no ``N x C`` one-hot,
``ValueError`` on bad input.
"""

from __future__ import annotations

from .focal import focal_loss
from .gce import generalized_cross_entropy
from .nce_rce import nce_rce
from .sce import symmetric_cross_entropy
from .squentropy import squentropy

__all__ = ["focal_loss", "generalized_cross_entropy", "nce_rce", "squentropy", "symmetric_cross_entropy"]
