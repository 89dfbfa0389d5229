"""LogitsLoss.hidden_states_loss: the decoder loss from hidden states and a SpeechBrain Linear equals the loss of its
logits, with SpeechBrain's masking and reductions, in value and gradients."""

from __future__ import annotations

import pytest
import torch
from speechbrain.nnet.linear import Linear

from hf_squareloss.speechbrain import LogitsLoss

pytestmark = pytest.mark.asr


@pytest.mark.parametrize(
    ("loss_type", "kw"),
    [("square", {"preset": "librispeech"}), ("tce", {}), ("ce", {"label_smoothing": 0.1})],
)
@pytest.mark.parametrize("reduction", ["mean", "batch", "sum"])
def test_hidden_states_loss_equals_the_loss_of_the_logits(loss_type, kw, reduction):
    torch.manual_seed(0)
    B, T, d, C = 3, 7, 8, 40
    layer = Linear(input_size=d, n_neurons=C).double()
    hidden = torch.randn(B, T, d, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, C, (B, T + 1))  # one frame longer: cut as SpeechBrain does
    length = torch.tensor([1.0, 0.5, 0.75])
    loss = LogitsLoss(loss_type, num_classes=C, **kw)
    ours = loss.hidden_states_loss(hidden, layer, targets, length, reduction=reduction)
    got = torch.autograd.grad(ours.sum(), (hidden, layer.w.weight, layer.w.bias))
    expected = loss(layer(hidden), targets, length, reduction=reduction)
    want = torch.autograd.grad(expected.sum(), (hidden, layer.w.weight, layer.w.bias))
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12)


def test_hidden_states_loss_checks_the_layer():
    loss = LogitsLoss("square", num_classes=40)
    with pytest.raises(ValueError, match="built for 40 classes"):
        loss.hidden_states_loss(
            torch.randn(2, 3, 8), Linear(input_size=8, n_neurons=30), torch.zeros(2, 3).long()
        )
    with pytest.raises(ValueError, match=r"nn\.Linear or a SpeechBrain Linear"):
        loss.hidden_states_loss(torch.randn(2, 3, 8), torch.nn.Identity(), torch.zeros(2, 3).long())
