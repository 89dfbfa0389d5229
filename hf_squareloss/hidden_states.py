"""Training losses from a model's last hidden states and its output layer, so that the ``N x V`` logits never exist.

:class:`~hf_squareloss.SquareLossTrainer` with ``loss_from_hidden_states=True`` trains through here: the model
runs as usual, except that its output layer (the ``nn.Linear`` returned by ``get_output_embeddings()``) records its
input and returns a zero-stride placeholder instead of the logits. The loss is then the hidden-state form of the
configured loss (:mod:`hf_squareloss.linear`) of that input, the layer's weight and bias, and the labels: the same
value and gradients as through the logits, in ``O((N + V) d^2)`` (square loss) or ``O(chunk x V)`` memory (TCE, CE).

The output layer must be the model's last operation on the logits. That is checked once, on the first batch: the
model's own logits (evaluation mode, no gradient, first example) must equal the output layer applied to the
recorded input; a model that scales, caps or otherwise transforms its logits after the layer is refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .registry import hidden_state_function

__all__ = [
    "capture_output_layer_input",
    "check_output_layer_is_last",
    "hidden_state_loss_sum",
    "output_layer",
]

IGNORE_INDEX = -100


def _unwrap(model: Any) -> Any:
    return getattr(model, "module", model)  # DistributedDataParallel / DataParallel


def output_layer(model: Any) -> nn.Linear:
    """The model's output layer, ``get_output_embeddings()``, if it is an ``nn.Linear``; else ``ValueError``."""
    inner = _unwrap(model)
    name = type(inner).__name__
    getter = getattr(inner, "get_output_embeddings", None)
    layer = getter() if callable(getter) else None
    if layer is None:
        raise ValueError(
            f"{name} has no output embeddings (get_output_embeddings() is None): the loss from hidden states needs "
            "a model whose last layer is an nn.Linear returned by get_output_embeddings() (language-model heads); "
            "train this model through its logits (loss_from_hidden_states=False)"
        )
    if not isinstance(layer, nn.Linear):
        raise ValueError(
            f"{name}: get_output_embeddings() is a {type(layer).__name__}, not an nn.Linear; the loss from hidden "
            "states needs a linear output layer (train through the logits: loss_from_hidden_states=False)"
        )
    return layer


@contextlib.contextmanager
def capture_output_layer_input(layer: nn.Linear) -> Iterator[list[Tensor]]:
    """Within the block, ``layer`` records its inputs in the yielded list and returns zero-stride zeros of the
    logits' shape (no memory) instead of computing them."""
    seen: list[Tensor] = []

    def forward(x: Tensor) -> Tensor:
        seen.append(x)
        # zeros that depend on the input and on the layer's parameters (with zero gradient), so that
        # DistributedDataParallel with find_unused_parameters=True, which marks the parameters not reachable from
        # the outputs as unused, sees every parameter the loss reaches as used
        zero = x[(0,) * x.dim()] * 0.0 + layer.weight[0, 0] * 0.0
        if layer.bias is not None:
            zero = zero + layer.bias[0] * 0.0
        return zero.to(x.dtype).expand(*x.shape[:-1], layer.out_features)

    layer.forward = forward  # an instance attribute: shadows the class's forward, hooks still run
    try:
        yield seen
    finally:
        del layer.forward


def _first_example(inputs: Mapping[str, Any]) -> dict[str, Any]:
    batch = None
    for value in inputs.values():
        if isinstance(value, Tensor) and value.dim() > 0:
            batch = value.shape[0]
            break
    return {
        key: value[:1] if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == batch else value
        for key, value in inputs.items()
    }


@torch.no_grad()
def check_output_layer_is_last(model: Any, inputs: Mapping[str, Any], layer: nn.Linear) -> None:
    """``ValueError`` unless the model's logits are ``layer`` applied to what it receives (first example,
    evaluation mode: no dropout)."""
    inner = _unwrap(model)
    sample = _first_example(inputs)
    was_training = inner.training
    inner.eval()
    try:
        logits = inner(**sample).logits
        with capture_output_layer_input(layer) as seen:
            inner(**sample)
    finally:
        inner.train(was_training)
    name = type(inner).__name__
    if len(seen) != 1:
        raise ValueError(
            f"{name}: its output layer ran {len(seen)} times in one forward pass; the loss from hidden states "
            "needs it to make the logits once"
        )
    remade = nn.functional.linear(seen[0], layer.weight, layer.bias)
    if remade.shape != logits.shape or not torch.allclose(
        remade.float(), logits.float(), rtol=1e-3, atol=1e-3 * float(logits.abs().max().clamp_min(1.0))
    ):
        raise ValueError(
            f"{name}: its logits are not its output layer's output (it transforms them after the layer: "
            "scaling, soft-capping, ...); the loss from hidden states would train another function. Train it "
            "through the logits (loss_from_hidden_states=False)"
        )


def hidden_state_loss_sum(
    model: Any,
    inputs: Mapping[str, Any],
    labels: Tensor,
    loss_type: str,
    params: Mapping[str, float],
    *,
    shift: bool,
) -> Tensor:
    """Run ``model`` on ``inputs`` (without labels) and return the summed loss of its output layer's input.

    ``shift``: causal LM, position ``t`` predicts ``labels[..., t + 1]``.
    """
    layer = output_layer(model)
    with capture_output_layer_input(layer) as seen:
        model(**inputs)
    if len(seen) != 1:
        raise ValueError(f"the output layer ran {len(seen)} times in one forward pass; expected once")
    hidden = seen[0]
    if shift:
        hidden, labels = hidden[..., :-1, :], labels[..., 1:]
    if hidden.shape[:-1] != labels.shape:
        raise ValueError(
            f"{type(_unwrap(model)).__name__}: hidden states {tuple(hidden.shape)} and labels "
            f"{tuple(labels.shape)} do not line up (expected hidden (..., d) and labels (...))"
        )
    fn = hidden_state_function(loss_type)
    return fn(hidden, layer.weight, labels, layer.bias, ignore_index=IGNORE_INDEX, reduction="sum", **params)
