"""SquareLossTrainer with loss_from_hidden_states: a tiny GPT-2 trained from its hidden states takes the step of its
own loss (ce) and of the formulas on its logits (square, tce); accumulation and two processes are exact; the logits
are never made; models the path cannot train are refused."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForSequenceClassification, GPT2LMHeadModel

import hf_squareloss as hsl
from hf_squareloss import SquareLossTrainer

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
import lm_step

SCRIPT = Path(__file__).parent / "scripts" / "lm_step.py"


def _batch(n: int = 16) -> dict[str, torch.Tensor]:
    data = lm_step.dataset()[:n]
    return {key: torch.tensor(value) for key, value in data.items()}


def _trainer(tmp_path, model, loss_type: str, hidden: bool = True, **kw) -> SquareLossTrainer:
    args = lm_step.training_args(str(tmp_path), 16, 1, loss_type, loss_from_hidden_states=hidden, **kw)
    return SquareLossTrainer(model=model, args=args, train_dataset=lm_step.dataset())


def _reference_sum(loss_type: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss summed over the next-token targets, on the model's logits (position t predicts label t + 1)."""
    logits, labels = logits[:, :-1], labels[:, 1:]
    if loss_type == "ce":
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="sum")
    if loss_type == "square":  # k, M from the number of classes (400: k=1, M=15)
        f = logits[labels != -100]
        y = labels[labels != -100]
        f_y = f[torch.arange(len(y)), y]
        return ((f**2).sum(-1) - f_y**2 + (f_y - 15.0) ** 2).sum() / f.shape[-1]
    return hsl.tamed_cross_entropy(logits, labels, alpha=1.5, reduction="sum")


@pytest.mark.parametrize("loss_type", ["ce", "square", "tce"])
def test_loss_and_gradients_equal_the_formula_on_the_logits(tmp_path, loss_type):
    model = lm_step.tiny_gpt2()
    trainer = _trainer(tmp_path, model, loss_type)
    batch = _batch()
    count = batch["labels"][:, 1:].ne(-100).sum()
    model.train()
    ours = trainer.compute_loss(model, dict(batch), num_items_in_batch=count)
    ours.backward()
    got = [p.grad.clone() for p in model.parameters()]
    reference = copy.deepcopy(model)
    reference.zero_grad()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    expected = _reference_sum(loss_type, reference(**inputs).logits, batch["labels"]) / count
    expected.backward()
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    for g, w in zip(got, [p.grad for p in reference.parameters()], strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
    if loss_type == "ce":  # GPT-2's own loss, the mean over the next-token targets
        torch.testing.assert_close(ours, reference(**batch).loss, rtol=1e-5, atol=1e-6)


def test_one_step_is_the_step_of_the_models_own_loss(tmp_path):
    base, data = lm_step.tiny_gpt2(), lm_step.dataset()
    ours = lm_step.one_step(base, data, 16, 1, "ce", str(tmp_path))
    model = copy.deepcopy(base)
    model.train()
    loss = model(**_batch()).loss  # the whole data set is one batch
    loss.backward()
    with torch.no_grad():
        expected = torch.cat([(p - 0.5 * p.grad).flatten() for p in model.parameters()])
    # the Trainer counts the next-token targets labels[..., 1:] for GPT-2 too (whose loss_type is None)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def single_process_steps(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("lm_steps"))
    base, data = lm_step.tiny_gpt2(), lm_step.dataset()
    return {
        (loss_type, batch, accumulation): lm_step.one_step(base, data, batch, accumulation, loss_type, tmp)
        for loss_type in lm_step.LOSS_TYPES
        for batch, accumulation in ((16, 1), (8, 2))
    }


@pytest.mark.parametrize("loss_type", lm_step.LOSS_TYPES)
def test_gradient_accumulation_is_exact(single_process_steps, loss_type):
    torch.testing.assert_close(
        single_process_steps[(loss_type, 8, 2)], single_process_steps[(loss_type, 16, 1)], rtol=0, atol=1e-6
    )


@pytest.mark.slow
def test_two_processes_equal_one(single_process_steps, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541"]
    proc = subprocess.run(
        [*cmd, str(SCRIPT), str(tmp_path), "8", "1"], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = torch.load(tmp_path / "params.pt")
    assert set(results) == set(lm_step.LOSS_TYPES)
    for loss_type, params in results.items():
        torch.testing.assert_close(params, single_process_steps[(loss_type, 16, 1)], rtol=0, atol=1e-6)


class _Allocations(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.largest = (0, "")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes() > self.largest[0]:
                self.largest = (t.untyped_storage().nbytes(), str(func))
        return out


def test_training_step_never_makes_the_logits(tmp_path):
    model = lm_step.tiny_gpt2()
    trainer = _trainer(tmp_path, model, "square")
    batch = _batch()
    model.train()
    trainer.compute_loss(
        model, dict(batch)
    )  # the first call checks the output layer (with logits of one row)
    n = batch["input_ids"].numel()
    with _Allocations() as seen:
        trainer.compute_loss(model, dict(batch)).backward()
    assert seen.largest[0] < n * lm_step.VOCAB * 4 / 2, seen.largest
    with _Allocations() as seen_logits:  # the reference point: the logits path
        trainer_logits = _trainer(tmp_path / "logits", model, "square", hidden=False)
        trainer_logits.compute_loss(model, dict(batch)).backward()
    assert seen_logits.largest[0] >= n * lm_step.VOCAB * 4


def test_evaluation_and_predict_return_logits(tmp_path):
    model = lm_step.tiny_gpt2()
    trainer = _trainer(tmp_path, model, "square")
    trainer.train()
    out = trainer.predict(lm_step.dataset())
    assert out.predictions.shape == (lm_step.NUM_EXAMPLES, lm_step.LENGTH, lm_step.VOCAB)
    model.eval()
    with torch.no_grad():
        logits = model(**{k: v for k, v in _batch().items() if k != "labels"}).logits
    torch.testing.assert_close(torch.as_tensor(out.predictions), logits, rtol=1e-4, atol=1e-5)


def test_models_without_a_linear_output_layer_are_refused(tmp_path):
    config = BertConfig(
        vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    with pytest.raises(ValueError, match="no output embeddings"):
        _trainer(tmp_path, BertForSequenceClassification(config), "square")


class _ScaledLogitsGPT2(GPT2LMHeadModel):
    """Transforms its logits after the output layer (as logit soft-capping or scaling models do)."""

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        out.logits = 0.5 * out.logits
        return out


def test_logits_transformed_after_the_output_layer_are_refused(tmp_path):
    model = _ScaledLogitsGPT2(lm_step.tiny_gpt2().config)
    trainer = _trainer(tmp_path, model, "ce")
    model.train()
    with pytest.raises(ValueError, match="not its output layer's output"):
        trainer.compute_loss(model, _batch())
    assert model.training  # the check restores the training mode


def test_loss_without_a_hidden_state_form_is_refused(tmp_path):
    trainer = _trainer(tmp_path, lm_step.tiny_gpt2(), "softmax_mse")
    with pytest.raises(ValueError, match="no form computed from the hidden states"):
        trainer.train()


def test_seq2seq_model_trains_on_its_own_targets(tmp_path):
    """T5: decoder inputs made from the labels, the loss of the decoder's output layer equals the model's own CE."""
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(
        vocab_size=50,
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        dropout_rate=0.0,
        decoder_start_token_id=0,
    )
    model = T5ForConditionalGeneration(config)
    trainer = _trainer(tmp_path, model, "ce")
    g = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(1, 50, (4, 7), generator=g),
        "labels": torch.randint(1, 50, (4, 5), generator=g),
    }
    batch["labels"][1, 3:] = -100
    model.train()
    ours = trainer.compute_loss(model, dict(batch))
    torch.testing.assert_close(ours, model(**batch).loss, rtol=1e-5, atol=1e-6)
