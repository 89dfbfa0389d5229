"""Evaluation counts as training does, for every head and loss, and reports the NLL the model serves.

``eval_loss`` is the training objective normalised as in training (causal LMs over ``labels[..., 1:]``, CTC per
utterance); ``eval_nll`` / ``eval_perplexity`` are checked against formulas written here in float64, and ``ce``'s
``eval_loss`` against the model's own loss.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import Trainer, TrainingArguments

import hf_squareloss as hsl
from hf_squareloss import SquareLossTrainer, SquareLossTrainingArguments

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
import one_step

SCRIPTS = Path(__file__).parent / "scripts"


def _args(tmp_path, **kw) -> SquareLossTrainingArguments:
    base = dict(output_dir=str(tmp_path), report_to=[], disable_tqdm=True, use_cpu=True, save_strategy="no")
    return SquareLossTrainingArguments(**{**base, **kw})


def _tce(nll: torch.Tensor, alpha: float = 1.5) -> torch.Tensor:
    return ((1 + nll) ** (1 - alpha) - 1) / (1 - alpha)


# ---------------------------------------------------------------------------------------------------------------
# causal LM: rows of 8 tokens; eval_loss was 7/8 of the model's own loss (counted on the unshifted labels)
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpt2_eval():
    model = one_step.tiny_lm("gpt2").eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, one_step.LM_VOCAB, (12, 8), generator=g)
    with torch.no_grad():
        logits = model(input_ids=ids).logits.double()
    shifted, targets = logits[:, :-1], ids[:, 1:]
    nll = -torch.log_softmax(shifted, -1).gather(-1, targets[..., None])[..., 0]  # (12, 7), independent
    return model, ids, nll


@pytest.mark.parametrize("loss_type", ["ce", "tce"])
def test_causal_lm_eval_loss_counts_the_shifted_tokens(tmp_path, gpt2_eval, loss_type):
    model, ids, nll = gpt2_eval
    data = Dataset.from_dict({"input_ids": ids.tolist(), "labels": ids.tolist()})
    trainer = SquareLossTrainer(
        model=model,
        args=_args(tmp_path, loss_type=loss_type, per_device_eval_batch_size=4),
        eval_dataset=data,
    )
    metrics = trainer.evaluate()
    expected = nll.mean() if loss_type == "ce" else _tce(nll).mean()
    assert metrics["eval_loss"] == pytest.approx(float(expected), rel=1e-5)
    assert metrics["eval_nll"] == pytest.approx(float(nll.mean()), rel=1e-6)
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(float(nll.mean())), rel=1e-6)
    if loss_type == "ce":  # the model's own loss
        with torch.no_grad():
            own = model(input_ids=ids, labels=ids).loss
        assert metrics["eval_loss"] == pytest.approx(float(own), rel=1e-5)


def test_eval_nll_is_the_exact_token_mean_over_ragged_batches(tmp_path, gpt2_eval):
    """Rows of 3 to 8 tokens, right-padded with -100: eval_nll is the mean over every real token of the set (the
    per-batch mean of means that eval_loss is would weight batches equally)."""
    model, ids, _ = gpt2_eval
    lengths = [8, 3, 5, 8, 4, 6, 7, 3, 8, 5, 2, 6]
    labels = ids.clone()
    for row, n in enumerate(lengths):
        labels[row, n:] = -100
    data = Dataset.from_dict({"input_ids": ids.tolist(), "labels": labels.tolist()})
    metrics = SquareLossTrainer(
        model=model, args=_args(tmp_path, loss_type="square", per_device_eval_batch_size=5), eval_dataset=data
    ).evaluate()
    with torch.no_grad():
        logits = model(input_ids=ids).logits.double()
    M = hsl.square_loss_preset(
        None, num_classes=one_step.LM_VOCAB
    ).M  # softmax(f / M): the square loss's scores
    total, count = 0.0, 0
    for row, n in enumerate(lengths):
        for t in range(1, n):
            total -= float(torch.log_softmax(logits[row, t - 1] / M, -1)[ids[row, t]])
            count += 1
    assert metrics["eval_nll"] == pytest.approx(total / count, rel=1e-6)
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(total / count), rel=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# classification: the square loss's served scores, and the fitted temperature
# ---------------------------------------------------------------------------------------------------------------
def test_classification_eval_nll_reads_the_logits_as_the_loss_says(tmp_path):
    model = one_step.tiny_bert(num_labels=3).eval()
    data = one_step.dataset()
    ids = torch.tensor(data["input_ids"])
    labels = torch.tensor(data["labels"])
    with torch.no_grad():
        logits = model(input_ids=ids).logits.double()
    for loss_type, temperature in (("square", None), ("square", 0.37), ("tce", None), ("ce", 2.5)):
        trainer = SquareLossTrainer(
            model=model,
            args=_args(tmp_path, loss_type=loss_type, per_device_eval_batch_size=5),
            eval_dataset=data,
        )
        if temperature is not None:
            hsl.set_temperature(model, temperature)
        metrics = trainer.evaluate()
        M = hsl.square_loss_preset(None, num_classes=3).M if loss_type == "square" else 1.0
        z = logits / M / (temperature or 1.0)
        expected = F.cross_entropy(z, labels).item()
        assert metrics["eval_nll"] == pytest.approx(expected, rel=1e-6), (loss_type, temperature)
        assert "eval_perplexity" not in metrics
        hsl.set_temperature(model, None)


def test_a_compute_metrics_number_named_nll_is_kept(tmp_path):
    data = one_step.dataset()
    metrics = SquareLossTrainer(
        model=one_step.tiny_bert(),
        args=_args(tmp_path, loss_type="ce"),
        eval_dataset=data,
        compute_metrics=lambda prediction: {"nll": 123.0},
    ).evaluate()
    assert metrics["eval_nll"] == 123.0


# ---------------------------------------------------------------------------------------------------------------
# CTC on real AN4 audio, through a script in the shape of run_speech_recognition_ctc.py
# ---------------------------------------------------------------------------------------------------------------
def _speech_ctc(tmp_path, an4, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        str(SCRIPTS / "speech_ctc.py"),
        "--an4_root",
        str(an4),
        "--output_dir",
        str(tmp_path),
        "--do_eval",
        "--use_cpu",
        "--report_to",
        "none",
        "--per_device_eval_batch_size",
        "3",
        "--max_eval_samples",
        "7",
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def _metrics(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("METRICS ")]
    return json.loads(line[len("METRICS ") :])


@pytest.mark.asr
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_ctc_eval_loss_equals_the_models_own_on_an4(tmp_path, shared_data, reduction):
    """ce's eval_loss is the model's own CTC loss (the stock Trainer's); it was divided by the label length."""
    an4 = shared_data("an4")
    flags = ("--ctc_loss_reduction", reduction)
    stock = _metrics(_speech_ctc(tmp_path / "stock", an4, "--stock", *flags))
    ce = _metrics(_speech_ctc(tmp_path / "ce", an4, "--loss_type", "ce", *flags))
    tce = _metrics(_speech_ctc(tmp_path / "tce", an4, "--loss_type", "tce", "--tce_alpha", "0.5", *flags))
    assert ce["eval_loss"] == pytest.approx(stock["eval_loss"], rel=1e-5)
    if reduction == "mean":  # per utterance, nll / target length, averaged: the model's own loss
        assert ce["eval_nll"] == pytest.approx(ce["eval_loss"], rel=1e-5)
    assert tce["eval_nll"] == pytest.approx(ce["eval_nll"], rel=1e-6)  # same model, same probabilities
    assert "eval_perplexity" not in ce
    card = (tmp_path / "tce" / "README.md").read_text()
    assert "Tamed CTC" in card and r"\mathrm{nll}" in card and "form: ctc" in card
    assert r"\sum_{i \neq y}" not in card and "over $C$ classes" not in card


@pytest.mark.asr
def test_a_ctc_model_with_the_default_loss_fails_when_the_trainer_is_built(tmp_path, shared_data):
    result = _speech_ctc(tmp_path, shared_data("an4"))  # no --loss_type: the square loss
    assert result.returncode != 0
    assert "TRAINER BUILT" not in result.stdout
    assert "loss_type='square' does not apply to the CTC head of Wav2Vec2ForCTC" in result.stderr
    assert "--loss_type ce" in result.stderr
    # raised where the script builds its Trainer, not later
    frames = [line for line in result.stderr.splitlines() if "speech_ctc.py" in line]
    assert frames and "trainer = trainer_class(" in result.stderr.split(frames[-1])[1].splitlines()[1]


def test_the_stock_trainer_refuses_a_ctc_head_with_the_square_loss_when_built(tmp_path):
    from test_heads import _ctc_model

    loss = hsl.make_compute_loss_func("square")
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    with pytest.raises(ValueError, match="does not apply to the CTC head of Wav2Vec2ForCTC"):
        Trainer(model=_ctc_model(), args=args, compute_loss_func=loss, callbacks=[loss])
    with pytest.raises(ValueError, match="does not apply to the CTC head of Wav2Vec2ForCTC"):
        SquareLossTrainer(model_init=lambda: _ctc_model(), args=_args(tmp_path))


# ---------------------------------------------------------------------------------------------------------------
# two processes: eval_nll is the mean over the data set, without the rows the sampler repeats
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_eval_nll_over_two_processes_equals_one(tmp_path):
    script = SCRIPTS / "eval_nll.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "one")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    double = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            str(script),
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert double.returncode == 0, double.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "eval.json").read_text())
    two = json.loads((tmp_path / "two" / "eval.json").read_text())
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["eval_nll"] == pytest.approx(one["eval_nll"], rel=1e-6)
    assert one["eval_nll"] == pytest.approx(one["expected_nll"], rel=1e-6)
    assert two["eval_perplexity"] == pytest.approx(one["eval_perplexity"], rel=1e-6)
