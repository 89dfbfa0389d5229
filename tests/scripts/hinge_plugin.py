"""A loss defined outside the package: a weighted multi-class hinge loss (Crammer & Singer), registered by the tests.

``weight * max(0, margin + max_{i != y} f_i - f_y)``. This module imports only the registry and the functional core,
so that a script can register the loss before ``hf_squareloss.training_args`` is imported.
"""

from __future__ import annotations

import torch

from hf_squareloss import functional
from hf_squareloss.registry import LossParam, LossSpec

NAME = "hinge"
KEY = "crammer2001algorithmic"
BIB = "@article{crammer2001algorithmic, title = {On the Algorithmic Implementation of Multiclass Kernel-based Vector Machines}, author = {Crammer, Koby and Singer, Yoram}, journal = {JMLR}, year = {2001}}"
FORMULA = r"$\ell(f, y) = w \max(0, m + \max_{i \neq y} f_i - f_y)$"


def hinge_loss(logits, labels, *, weight=1.0, margin=1.0, ignore_index=-100, reduction="mean"):
    logits_2d, labels_1d, valid, bad = functional._flatten(logits, labels, ignore_index, reduction, "hinge")
    target = torch.where(valid, labels_1d, 0).unsqueeze(-1)
    f_y = logits_2d.gather(-1, target).squeeze(-1)
    others = logits_2d.scatter(-1, target, float("-inf")).amax(-1)
    per_item = torch.where(valid, weight * (margin + others - f_y).clamp_min(0), 0.0)
    result = functional._reduce(per_item, valid, reduction, labels.shape)
    return functional._finish(result, logits, labels, bad, valid, ignore_index, "hinge")


SPEC = LossSpec(
    loss_type=NAME,
    function=hinge_loss,
    params=(
        LossParam("weight", "overall weight > 0", default=1.0),
        LossParam("margin", "margin > 0 between the true class and the others", default=1.0),
    ),
    outputs="scores",
    raw_logits=True,
    title="multi-class hinge loss (Crammer & Singer, 2001)",
    formula=FORMULA,
    references=(KEY,),
)
