"""What the hand-written backward passes of the losses share."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def differentiable_grad(per_item: Callable[[Tensor], Tensor], logits: Tensor, grad_out: Tensor) -> Tensor:
    """Gradient of ``sum(grad_out * per_item(logits))`` with a graph, for a double backward.

    A hand-written backward calls this when the gradient itself must be differentiable (Hessian-vector products,
    ``gradgradcheck``): the loss is recomputed from the logits with differentiable operations.
    """
    with torch.enable_grad():
        x = logits if logits.requires_grad else logits.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(per_item(x), x, grad_out, create_graph=True)
    return grad


def finite_log_sum_exp(x: Tensor) -> Tensor:
    """``logsumexp`` over the last dimension, NaN where it is infinite (a ``+inf`` logit), as ``log_softmax`` gives."""
    lse = torch.logsumexp(x, dim=-1)
    return torch.where(torch.isinf(lse), torch.nan, lse)
