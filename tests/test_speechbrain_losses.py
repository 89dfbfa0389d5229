"""SpeechBrain-API losses of hf_squareloss.speechbrain against independent computations.

References here are explicit loops over utterances and frames in float64 (or, for CTC, torch's CTC called one
utterance at a time); SpeechBrain's own ``nll_loss``/``ctc_loss`` are the references for the drop-in claims.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hyperpyyaml import load_hyperpyyaml
from hypothesis import given, settings
from hypothesis import strategies as st
from speechbrain.nnet.losses import ctc_loss as sb_ctc_loss
from speechbrain.nnet.losses import nll_loss as sb_nll_loss

from hf_squareloss.speechbrain import (
    DecoderLogProbs,
    LogitsLoss,
    fit_score_scale,
    logits_loss,
    square_loss,
    tamed_ctc_loss,
    tamed_nll_loss,
)
from hf_squareloss.speechbrain.masking import length_mask

pytestmark = pytest.mark.asr

REDUCTIONS = ["mean", "batch", "batchmean", "sum"]


# ----------------------------------------------------------------------------------------------------------------
# independent references
# ----------------------------------------------------------------------------------------------------------------
def counted_frames(length: float, frames: int) -> int:
    """SpeechBrain: frame t counts when t < length * T - 1e-6."""
    return sum(1 for t in range(frames) if t < length * frames - 1e-6)


def ref_square(f: list[float], y: int, k: float, M: float) -> float:
    C = len(f)
    return (k * (f[y] - M) ** 2 + sum(f[i] ** 2 for i in range(C) if i != y)) / C


def ref_tame(nll: float, alpha: float) -> float:
    if alpha == 1.0:
        return math.log(1.0 + nll)
    return ((1.0 + nll) ** (1.0 - alpha) - 1.0) / (1.0 - alpha)


def ref_reduce(per_utt: list[list[float]], reduction: str):
    """per_utt[b] = values of the counted frames of utterance b."""
    total = sum(sum(v) for v in per_utt)
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / sum(len(v) for v in per_utt)
    if reduction == "batchmean":
        return total / len(per_utt)
    return [sum(v) / len(v) for v in per_utt]


def ref_framewise(x: torch.Tensor, y: torch.Tensor, lengths: list[float], per_frame, reduction: str):
    B, T, _ = x.shape
    values = []
    for b in range(B):
        n = counted_frames(lengths[b], T)
        values.append([per_frame(x[b, t].double().tolist(), int(y[b, t])) for t in range(n)])
    return ref_reduce(values, reduction)


def as_tensor(value) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    B, T, C = 4, 8, 6
    logits = torch.randn(B, T, C, generator=g) * 3
    targets = torch.randint(0, C, (B, T), generator=g)
    lengths = torch.tensor([1.0, 0.5, 0.75, 0.125])  # 8, 4, 6, 1 frames
    return logits, targets, lengths


# ----------------------------------------------------------------------------------------------------------------
# masks
# ----------------------------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    frames=st.integers(1, 40),
    lengths=st.lists(st.floats(0.0, 1.0, allow_nan=False, width=32), min_size=1, max_size=6),
)
def test_length_mask_matches_speechbrain_rounding(frames, lengths):
    length = torch.tensor(lengths, dtype=torch.float32)
    mask = length_mask(length, len(lengths), frames, torch.device("cpu"))
    from speechbrain.nnet.losses import compute_length_mask

    expected = compute_length_mask(torch.zeros(len(lengths), frames), length).bool()
    assert torch.equal(mask, expected)


# ----------------------------------------------------------------------------------------------------------------
# square loss
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("k", "M"), [(1.0, 1.0), (1.0, 15.0), (15.0, 30.0)])
def test_square_loss_against_loop(batch, reduction, k, M):
    logits, targets, lengths = batch
    got = square_loss(logits, targets, lengths, reduction=reduction, k=k, M=M)
    expected = ref_framewise(
        logits, targets, lengths.tolist(), lambda f, y: ref_square(f, y, k, M), reduction
    )
    torch.testing.assert_close(got.double(), as_tensor(expected), rtol=1e-5, atol=1e-5)
    if reduction == "batch":
        assert got.shape == (logits.shape[0],)


def test_square_loss_padded_frames_get_zero_gradient_and_match_autograd(batch):
    logits, targets, lengths = batch
    x = logits.double().requires_grad_(True)
    square_loss(x, targets, lengths, k=2.0, M=5.0).backward()
    _, T, C = x.shape
    for b, length in enumerate(lengths.tolist()):
        n = counted_frames(length, T)
        assert torch.all(x.grad[b, n:] == 0)
    # the reference, differentiated by autograd
    y = x.detach().clone().requires_grad_(True)
    terms = []
    for b, length in enumerate(lengths.tolist()):
        for t in range(counted_frames(length, T)):
            target = int(targets[b, t])
            onehot = torch.zeros(C, dtype=torch.float64)
            onehot[target] = 1.0
            weights = 1.0 + (2.0 - 1.0) * onehot
            terms.append((weights * (y[b, t] - 5.0 * onehot) ** 2).sum() / C)
    (torch.stack(terms).sum() / len(terms)).backward()
    torch.testing.assert_close(x.grad, y.grad)


def test_square_loss_2d_inputs_one_item_per_utterance():
    g = torch.Generator().manual_seed(1)
    logits, targets = torch.randn(5, 4, generator=g), torch.randint(0, 4, (5,), generator=g)
    per = [ref_square(logits[b].double().tolist(), int(targets[b]), 1.0, 15.0) for b in range(5)]
    got = square_loss(logits, targets, torch.rand(5), reduction="batch", k=1, M=15)  # length is ignored
    torch.testing.assert_close(got.double(), as_tensor(per))
    torch.testing.assert_close(square_loss(logits, targets, k=1, M=15).double(), as_tensor(sum(per) / 5))


def test_allowed_len_diff_truncates_and_refuses(batch):
    logits, targets, lengths = batch
    longer = torch.cat([logits, torch.randn(4, 2, 6)], dim=1)
    assert torch.equal(
        square_loss(longer, targets, lengths, k=1, M=1), square_loss(logits, targets, lengths, k=1, M=1)
    )
    shorter_targets = targets[:, :6]
    expected = square_loss(logits[:, :6], shorter_targets, lengths, k=1, M=1)
    assert torch.equal(square_loss(logits, shorter_targets, lengths, k=1, M=1), expected)
    with pytest.raises(ValueError, match="allowed_len_diff=1"):
        square_loss(longer, targets, lengths, allowed_len_diff=1, k=1, M=1)


def test_square_loss_preset_and_refusals(batch):
    logits, targets, lengths = batch
    assert torch.equal(
        square_loss(logits, targets, lengths, preset="librispeech"),
        square_loss(logits, targets, lengths, k=15, M=30),
    )
    with pytest.raises(ValueError, match="label smoothing"):
        square_loss(logits, targets, lengths, label_smoothing=0.1)
    with pytest.raises(ValueError, match="k must be"):
        square_loss(logits, targets, lengths, k=-1.0, M=1.0)


def test_bad_inputs_are_named(batch):
    logits, targets, lengths = batch
    with pytest.raises(ValueError, match="reduction must be one of"):
        square_loss(logits, targets, lengths, reduction="average", k=1, M=1)
    with pytest.raises(ValueError, match="outside"):
        square_loss(logits, torch.full_like(targets, 6), lengths, k=1, M=1)
    with pytest.raises(ValueError, match=r"need targets \[B, T\]"):
        square_loss(logits, targets[0], lengths, k=1, M=1)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        square_loss(logits, targets, lengths[:2], k=1, M=1)
    with pytest.raises(ValueError, match=r"relative lengths in \[0, 1\]"):
        square_loss(logits, targets, lengths * 8, k=1, M=1)
    with pytest.raises(ValueError, match="relative lengths"):
        square_loss(logits, targets, torch.tensor([8, 4, 6, 1]), k=1, M=1)
    with pytest.raises(ValueError, match="integer tensor"):
        square_loss(logits, targets.float(), lengths, k=1, M=1)
    with pytest.raises(ValueError, match=r"\[B, T, C\] or \[B, C\]"):
        square_loss(logits[0, 0], targets[0, 0], k=1, M=1)
    with pytest.raises(ValueError, match="unknown loss_type 'mse'"):
        logits_loss(logits, targets, lengths, loss_type="mse")


def test_out_of_range_targets_on_padded_frames_are_ignored(batch):
    logits, targets, lengths = batch
    padded = targets.clone()
    padded[3, 1:] = 99  # utterance 3 has one counted frame
    assert torch.equal(
        square_loss(logits, padded, lengths, k=1, M=15), square_loss(logits, targets, lengths, k=1, M=15)
    )


# ----------------------------------------------------------------------------------------------------------------
# logits_loss / LogitsLoss: the registry's losses on raw logits
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_logits_loss_ce_is_nll_of_log_softmax(batch, reduction):
    logits, targets, lengths = batch
    got = logits_loss(logits, targets, lengths, reduction=reduction, loss_type="ce")
    expected = sb_nll_loss(logits.log_softmax(-1), targets, lengths, reduction=reduction)
    if reduction == "sum":  # SpeechBrain's nll_loss returns the unreduced masked frames for "sum"
        expected = expected.sum()
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 1.5])
def test_logits_loss_tce_against_loop(batch, alpha):
    logits, targets, lengths = batch

    def per_frame(f, y):
        log_z = math.log(sum(math.exp(v) for v in f))
        return ref_tame(log_z - f[y], alpha)

    got = logits_loss(logits, targets, lengths, reduction="batch", loss_type="tce", alpha=alpha)
    expected = ref_framewise(logits, targets, lengths.tolist(), per_frame, "batch")
    torch.testing.assert_close(got.double(), as_tensor(expected), rtol=1e-5, atol=1e-6)


def test_logits_loss_module(batch):
    logits, targets, lengths = batch
    module = LogitsLoss("square", num_classes=6, preset="timit")
    assert module.config.params == {"k": 1.0, "M": 15.0}
    assert torch.equal(module(logits, targets, lengths), square_loss(logits, targets, lengths, k=1, M=15))
    assert module(logits, targets, lengths, reduction="batch").shape == (4,)
    with pytest.raises(ValueError, match="built for 6 classes"):
        module(logits[..., :5], targets.clamp(max=4), lengths)
    assert "square (k=1, M=15)" in repr(module)


# ----------------------------------------------------------------------------------------------------------------
# Tamed CE on log-probabilities: drop-in for nll_loss
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "batch", "batchmean"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("with_weight", [False, True])
def test_tamed_nll_at_alpha_zero_equals_speechbrain_nll_loss_exactly(
    batch, reduction, label_smoothing, with_weight
):
    logits, targets, lengths = batch
    log_p = logits.log_softmax(-1)
    weight = torch.linspace(0.5, 2.0, 6) if with_weight else None
    expected = sb_nll_loss(
        log_p, targets, lengths, label_smoothing=label_smoothing, weight=weight, reduction=reduction
    )
    got = tamed_nll_loss(
        log_p, targets, lengths, label_smoothing, weight=weight, reduction=reduction, alpha=0.0
    )
    assert torch.equal(got, expected)


@settings(max_examples=25, deadline=None)
@given(
    B=st.integers(1, 4),
    T=st.integers(1, 9),
    C=st.integers(2, 7),
    seed=st.integers(0, 10_000),
    reduction=st.sampled_from(["mean", "batch", "batchmean"]),
)
def test_tamed_nll_alpha_zero_equals_nll_loss_on_random_shapes(B, T, C, seed, reduction):
    g = torch.Generator().manual_seed(seed)
    log_p = torch.randn(B, T, C, generator=g).log_softmax(-1)
    targets = torch.randint(0, C, (B, T), generator=g)
    lengths = torch.randint(1, T + 1, (B,), generator=g).float() / T
    lengths[0] = 1.0
    assert torch.equal(
        tamed_nll_loss(log_p, targets, lengths, reduction=reduction, alpha=0.0),
        sb_nll_loss(log_p, targets, lengths, reduction=reduction),
    )


def test_tamed_nll_alpha_zero_on_2d_inputs_equals_nll_loss():
    g = torch.Generator().manual_seed(3)
    log_p = torch.randn(5, 4, generator=g).log_softmax(-1)
    targets = torch.randint(0, 4, (5,), generator=g)
    assert torch.equal(tamed_nll_loss(log_p, targets, alpha=0.0), sb_nll_loss(log_p, targets))


@pytest.mark.parametrize("alpha", [0.3, 1.0, 1.5, 3.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_tamed_nll_against_loop(batch, alpha, reduction):
    logits, targets, lengths = batch
    log_p = logits.log_softmax(-1)
    got = tamed_nll_loss(log_p, targets, lengths, reduction=reduction, alpha=alpha)
    expected = ref_framewise(log_p, targets, lengths.tolist(), lambda f, y: ref_tame(-f[y], alpha), reduction)
    torch.testing.assert_close(got.double(), as_tensor(expected), rtol=1e-5, atol=1e-6)


def test_tamed_nll_gradient_is_nll_gradient_scaled(batch):
    logits, targets, lengths = batch
    alpha = 1.5
    x = logits.double().log_softmax(-1).detach().requires_grad_(True)
    tamed_nll_loss(x, targets, lengths, reduction="sum", alpha=alpha).backward()
    _, T, _ = x.shape
    expected = torch.zeros_like(x)
    for b, length in enumerate(lengths.tolist()):
        for t in range(counted_frames(length, T)):
            y = int(targets[b, t])
            nll = -float(x.detach()[b, t, y])
            expected[b, t, y] = -((1.0 + nll) ** -alpha)  # d/dx_y of tame(-x_y)
    torch.testing.assert_close(x.grad, expected)


def test_tamed_nll_refusals(batch):
    logits, targets, lengths = batch
    log_p = logits.log_softmax(-1)
    with pytest.raises(ValueError, match="label smoothing"):
        tamed_nll_loss(log_p, targets, lengths, label_smoothing=0.1, alpha=1.5)
    with pytest.raises(ValueError, match="not log-probabilities"):
        tamed_nll_loss(logits.abs() + 1.0, targets, lengths, alpha=1.5)
    with pytest.raises(ValueError, match="alpha must be"):
        tamed_nll_loss(log_p, targets, lengths, alpha=-0.5)
    with pytest.raises(ValueError, match="weight must have shape"):
        tamed_nll_loss(log_p, targets, lengths, weight=torch.ones(3), alpha=1.0)


# ----------------------------------------------------------------------------------------------------------------
# Tamed CTC
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture
def ctc_batch():
    g = torch.Generator().manual_seed(7)
    B, T, C, L = 4, 20, 6, 5
    log_probs = torch.randn(B, T, C, generator=g).log_softmax(-1)
    targets = torch.randint(1, C, (B, L), generator=g)
    input_lens = torch.tensor([1.0, 0.8, 0.55, 0.3])
    target_lens = torch.tensor([1.0, 0.6, 0.4, 0.8])
    return log_probs, targets, input_lens, target_lens


@pytest.mark.parametrize("reduction", ["mean", "batch", "batchmean", "sum"])
def test_tamed_ctc_at_alpha_zero_equals_speechbrain_ctc_loss(ctc_batch, reduction):
    log_probs, targets, input_lens, target_lens = ctc_batch
    expected = sb_ctc_loss(log_probs, targets, input_lens, target_lens, 0, reduction=reduction)
    got = tamed_ctc_loss(log_probs, targets, input_lens, target_lens, 0, reduction=reduction, alpha=0.0)
    assert torch.equal(got, expected)


def per_utterance_ctc(log_probs, targets, input_lens, target_lens, requires_grad=False):
    """CTC negative log-likelihood of each utterance, one F.ctc_loss call per utterance (absolute lengths)."""
    B, T, _ = log_probs.shape
    nlls, tokens = [], []
    for b in range(B):
        frames = round(float(input_lens[b]) * T)
        n_tokens = round(float(target_lens[b]) * targets.shape[1])
        nll = F.ctc_loss(
            log_probs[b, :frames].unsqueeze(1),
            targets[b, :n_tokens].unsqueeze(0),
            torch.tensor([frames]),
            torch.tensor([n_tokens]),
            blank=0,
            reduction="sum",
            zero_infinity=True,
        )
        nlls.append(nll)
        tokens.append(n_tokens)
    return nlls, tokens


@pytest.mark.parametrize("alpha", [0.2, 1.0, 1.5])
@pytest.mark.parametrize("reduction", ["mean", "batch", "batchmean", "sum"])
def test_tamed_ctc_against_formula(ctc_batch, alpha, reduction):
    log_probs, targets, input_lens, target_lens = ctc_batch
    nlls, tokens = per_utterance_ctc(log_probs.double(), targets, input_lens, target_lens)
    tamed = [ref_tame(float(n), alpha) for n in nlls]
    if reduction == "sum":
        expected = sum(tamed)
    elif reduction == "batchmean":
        expected = sum(tamed) / len(tamed)
    elif reduction == "batch":
        expected = [v / n for v, n in zip(tamed, tokens, strict=True)]
    else:
        expected = sum(v / max(n, 1) for v, n in zip(tamed, tokens, strict=True)) / len(tamed)
    got = tamed_ctc_loss(log_probs, targets, input_lens, target_lens, 0, reduction=reduction, alpha=alpha)
    torch.testing.assert_close(got.double(), as_tensor(expected), rtol=1e-5, atol=1e-5)


def test_tamed_ctc_gradient_is_ctc_gradient_scaled_per_utterance(ctc_batch):
    log_probs, targets, input_lens, target_lens = ctc_batch
    alpha = 0.7
    x = log_probs.double().requires_grad_(True)
    tamed_ctc_loss(x, targets, input_lens, target_lens, 0, reduction="sum", alpha=alpha).backward()
    y = log_probs.double().requires_grad_(True)
    nlls, _ = per_utterance_ctc(y, targets, input_lens, target_lens)
    scaled = sum((1.0 + float(n.detach())) ** -alpha * n for n in nlls)  # d/dn tame(n) = (1 + n)^-alpha
    scaled.backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-6, atol=1e-9)


def test_tamed_ctc_refusals(ctc_batch):
    log_probs, targets, input_lens, target_lens = ctc_batch
    with pytest.raises(ValueError, match="blank_index=0"):
        tamed_ctc_loss(log_probs, targets * 0, input_lens, target_lens, 0, alpha=0.5)
    with pytest.raises(ValueError, match="blank_index=9"):
        tamed_ctc_loss(log_probs, targets, input_lens, target_lens, 9, alpha=0.5)
    with pytest.raises(ValueError, match="input_lens"):
        tamed_ctc_loss(log_probs, targets, input_lens[:2], target_lens, 0, alpha=0.5)
    with pytest.raises(ValueError, match="alpha must be"):
        tamed_ctc_loss(log_probs, targets, input_lens, target_lens, 0, alpha=float("nan"))
    with pytest.raises(ValueError, match="not log-probabilities"):
        tamed_ctc_loss(log_probs + 5.0, targets, input_lens, target_lens, 0, alpha=0.5)
    with pytest.raises(ValueError, match=r"\[B, T, C\]"):
        tamed_ctc_loss(log_probs[0], targets, input_lens, target_lens, 0, alpha=0.5)


# ----------------------------------------------------------------------------------------------------------------
# hyperpyyaml use
# ----------------------------------------------------------------------------------------------------------------
YAML = """
loss_type: square
seq_cost: !name:hf_squareloss.speechbrain.square_loss
    preset: timit
nll_cost: !name:hf_squareloss.speechbrain.tamed_nll_loss
    alpha: 0.0
tce_cost: !name:hf_squareloss.speechbrain.tamed_nll_loss
    alpha: 1.0
ctc_cost: !name:hf_squareloss.speechbrain.tamed_ctc_loss
    blank_index: 0
    alpha: 0.0
module_cost: !new:hf_squareloss.speechbrain.LogitsLoss
    loss_type: !ref <loss_type>
    num_classes: 6
    k: 2.0
    M: 3.0
"""


def test_hyperpyyaml_name_and_new(batch, ctc_batch):
    hparams = load_hyperpyyaml(YAML)
    logits, targets, lengths = batch
    assert torch.equal(
        hparams["seq_cost"](logits, targets, length=lengths), square_loss(logits, targets, lengths, k=1, M=15)
    )
    log_p = logits.log_softmax(-1)
    assert torch.equal(
        hparams["nll_cost"](log_p, targets, length=lengths), sb_nll_loss(log_p, targets, lengths)
    )
    expected = ref_framewise(log_p, targets, lengths.tolist(), lambda f, y: math.log1p(-f[y]), "mean")
    torch.testing.assert_close(hparams["tce_cost"](log_p, targets, lengths).double(), as_tensor(expected))
    ctc = ctc_batch
    assert torch.equal(hparams["ctc_cost"](*ctc), sb_ctc_loss(*ctc, 0))
    assert torch.equal(
        hparams["module_cost"](logits, targets, lengths), square_loss(logits, targets, lengths, k=2, M=3)
    )
    with pytest.raises(ValueError, match="unknown loss_type"):
        load_hyperpyyaml(YAML, {"loss_type": "mse"})


# ----------------------------------------------------------------------------------------------------------------
# decoding: log-probabilities for beam search
# ----------------------------------------------------------------------------------------------------------------
def test_decoder_log_probs_per_loss():
    torch.manual_seed(0)
    linear = torch.nn.Linear(8, 5)
    hidden = torch.randn(3, 4, 8)
    ce = DecoderLogProbs(linear, "ce")
    torch.testing.assert_close(ce(hidden), linear(hidden).log_softmax(-1))
    square = DecoderLogProbs(linear, "square", k=1, M=15, scale=7.0)
    out = square(hidden)
    torch.testing.assert_close(out, (7.0 * linear(hidden) / 15.0).log_softmax(-1))
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(3, 4))
    assert torch.equal(out.argmax(-1), linear(hidden).argmax(-1))  # Hui & Belkin's argmax rule is kept
    assert square.w is linear  # a bare nn.Linear is its own "w"


def test_decoder_log_probs_state_round_trip():
    from speechbrain.nnet.linear import Linear

    lin = Linear(input_size=8, n_neurons=5)
    a = DecoderLogProbs(lin, "square", k=1, M=15, scale=3.25)
    assert a.w.out_features == 5  # what SpeechBrain's searchers read
    b = DecoderLogProbs(lin, "square", k=1, M=15)
    b.load_state_dict(a.state_dict())
    assert b.scale == 3.25
    c = DecoderLogProbs(lin, "square", k=15, M=30)
    with pytest.raises(ValueError, match="trained with square"):
        c.load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="exactly one"):
        DecoderLogProbs(lin)
    with pytest.raises(ValueError, match="score scale"):
        DecoderLogProbs(lin, "square", scale=0.0)


def test_fit_score_scale_recovers_the_generating_sharpness():
    g = torch.Generator().manual_seed(0)
    N, C, beta = 20_000, 8, 6.0
    scores = torch.rand(N, C, generator=g)
    targets = torch.multinomial(torch.softmax(beta * scores, -1), 1, generator=g).squeeze(1)
    fitted = fit_score_scale(scores, targets)
    assert abs(fitted - beta) < 0.5

    def loglik(b: float) -> float:
        return float((b * scores).log_softmax(-1).gather(1, targets[:, None]).sum())

    assert loglik(fitted) >= max(loglik(fitted * 0.95), loglik(fitted * 1.05))


def test_fit_score_scale_edges_and_errors():
    perfect = torch.eye(4).repeat(10, 1)
    assert fit_score_scale(perfect, torch.arange(4).repeat(10)) == 1000.0  # separable: the upper end
    anti = 1.0 - torch.eye(4)
    assert fit_score_scale(anti, torch.arange(4)) == 0.01
    with pytest.raises(ValueError, match="no decoder steps"):
        fit_score_scale(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        fit_score_scale(torch.full((2, 3), float("nan")), torch.zeros(2, dtype=torch.long))


def test_beam_search_with_square_loss_decoder_gives_log_probabilities():
    """A Transformer searcher with the wrapper: hypotheses come out and their scores are log-probabilities."""
    from speechbrain.decoders import CTCScorer, S2STransformerBeamSearcher, ScorerBuilder
    from speechbrain.lobes.models.transformer.TransformerASR import TransformerASR
    from speechbrain.nnet.linear import Linear

    torch.manual_seed(0)
    C = 7
    net = TransformerASR(C, 16, 32, 2, 1, 1, 64, causal=False).eval()
    seq_lin, ctc_lin = Linear(input_size=32, n_neurons=C), Linear(input_size=32, n_neurons=C)
    wrapper = DecoderLogProbs(seq_lin, "square", k=1, M=15, scale=5.0)
    scorer = ScorerBuilder(full_scorers=[CTCScorer(ctc_lin, 0, 2)], weights={"ctc": 0.4})
    searcher = S2STransformerBeamSearcher(
        modules=[net, wrapper],
        bos_index=1,
        eos_index=2,
        min_decode_ratio=0.0,
        max_decode_ratio=1.0,
        beam_size=3,
        scorer=scorer,
        using_eos_threshold=False,
    )
    src = torch.randn(2, 12, 16)
    enc = net.encode(src, torch.ones(2))
    hyps, _, scores, log_probs = searcher(enc, torch.ones(2))
    assert len(hyps) == 2
    assert torch.all(scores <= 0)
    assert torch.all(log_probs[torch.isfinite(log_probs)] <= 1e-6)


def test_batch_reduction_feeds_speechbrain_metric_stats(batch):
    """``reduction="batch"`` gives one value per utterance, which SpeechBrain's MetricStats stores per id."""
    import functools

    from speechbrain.utils.metric_stats import MetricStats

    logits, targets, lengths = batch
    stats = MetricStats(metric=functools.partial(square_loss, k=1.0, M=15.0, reduction="batch"))
    ids = ["a", "b", "c", "d"]
    stats.append(ids, logits, targets, lengths)
    per_utt = ref_framewise(
        logits, targets, lengths.tolist(), lambda f, y: ref_square(f, y, 1.0, 15.0), "batch"
    )
    assert stats.ids == ids
    torch.testing.assert_close(
        torch.tensor(stats.scores, dtype=torch.float64), as_tensor(per_utt), rtol=1e-5, atol=1e-5
    )
    assert stats.summarize("average") == pytest.approx(sum(per_utt) / 4, rel=1e-5)
