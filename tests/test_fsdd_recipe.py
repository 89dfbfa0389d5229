"""The SpeechBrain classification guide (recipes/fsdd): the changed line, the log-probability refusal, and the recipe
end to end on Free Spoken Digits with every loss."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch

import hf_squareloss as hsl
from hf_squareloss.speechbrain import LogitsLoss, logits_loss, square_loss

sb = pytest.importorskip("speechbrain")
RECIPE = Path(__file__).parents[1] / "recipes" / "fsdd"
sys.path.insert(0, str(RECIPE))
import fsdd_prepare  # noqa: E402
import train as fsdd_train  # noqa: E402
from speechbrain.lobes.models.Xvector import Classifier  # noqa: E402


def _batch():
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(
        5, 1, 6, generator=g
    )  # a classifier's raw output [B, 1, C], as in templates/speaker_id
    targets = torch.randint(0, 6, (5, 1), generator=g)
    lens = torch.tensor([1.0, 0.3, 0.8, 0.55, 1.0])  # relative audio lengths, as the template passes them
    return logits, targets, lens


def test_changed_line_with_ce_is_the_templates_nll_loss():
    logits, targets, lens = _batch()
    log_probs = torch.log_softmax(logits, dim=-1)
    cost = LogitsLoss("ce", num_classes=6)
    torch.testing.assert_close(cost(logits, targets, lens), sb.nnet.losses.nll_loss(log_probs, targets, lens))
    torch.testing.assert_close(
        cost(logits, targets, lens, reduction="batch"),
        sb.nnet.losses.nll_loss(log_probs, targets, lens, reduction="batch"),
    )


def test_square_loss_refuses_log_probabilities():
    logits, targets, lens = _batch()
    classifier = Classifier(input_shape=[None, None, 8], lin_blocks=0, out_neurons=6)
    log_probs = classifier(torch.randn(5, 1, 8))  # the template's classifier ends in a log-softmax
    for call in (
        lambda x: square_loss(x, targets, lens),
        lambda x: logits_loss(x, targets, lens, loss_type="square"),
        lambda x: LogitsLoss("square", num_classes=6)(x, targets, lens),
    ):
        with pytest.raises(ValueError, match=r"log-probabilities.*raw logits.*before the log-softmax"):
            call(log_probs)
        call(logits)  # raw logits are fine
    # the softmax-based losses are the same on log-probabilities and on logits: accepted
    for loss_type in ("ce", "tce"):
        torch.testing.assert_close(
            logits_loss(torch.log_softmax(logits, -1), targets, lens, loss_type=loss_type),
            logits_loss(logits, targets, lens, loss_type=loss_type),
        )
    # the check looks only at the counted frames: log-probabilities in padding do not matter
    mixed = torch.log_softmax(3 * torch.randn(2, 4, 6), -1)
    mixed[:, :2] = 3 * torch.randn(2, 2, 6)
    square_loss(mixed, torch.randint(0, 6, (2, 4)), torch.tensor([0.5, 0.5]))


def test_remove_log_softmax_gives_raw_logits():
    torch.manual_seed(0)
    classifier = Classifier(input_shape=[None, None, 8], lin_blocks=0, out_neurons=6)
    classifier.eval()
    x = torch.randn(5, 1, 8)
    log_probs = classifier(x)
    logits = fsdd_train.remove_log_softmax(classifier)(x)
    torch.testing.assert_close(torch.log_softmax(logits, -1), log_probs)
    assert not torch.allclose(logits.logsumexp(-1), torch.zeros(5, 1), atol=1e-3)


def test_prepare_splits_by_take(tmp_path, shared_data):
    paths = fsdd_prepare.prepare_fsdd(
        shared_data("fsdd"), tmp_path, train_takes=2, valid_takes=1, test_takes=1
    )
    rows = {split: json.loads(path.read_text()) for split, path in paths.items()}
    takes = {split: {int(i.rsplit("_", 1)[1]) for i in r} for split, r in rows.items()}
    assert takes == {"test": {0}, "valid": {5}, "train": {6, 7}}
    assert len(rows["train"]) == 2 * 6 * 10  # every speaker says every digit in every split
    assert fsdd_prepare.classes(paths["train"], "digit") == [str(d) for d in range(10)]
    with pytest.raises(FileNotFoundError, match="not the Free Spoken Digit Dataset"):
        fsdd_prepare.prepare_fsdd(tmp_path, tmp_path / "out")


@pytest.mark.parametrize("loss_type", hsl.loss_types())
def test_recipe_trains_speaker_id_with_every_loss(tmp_path, shared_data, loss_type):
    """Seconds per loss: 120 utterances, 3 epochs of a tiny x-vector; the recipe's own YAML, overridden."""
    out = tmp_path / loss_type
    results = fsdd_train.main(
        [
            str(RECIPE / "hparams" / "train.yaml"),
            "--noprogressbar",
            "--data_folder", str(shared_data("fsdd")),
            "--output_folder", str(out),
            "--loss_type", loss_type,
            "--train_takes", "2",
            "--valid_takes", "1",
            "--test_takes", "1",
            "--number_of_epochs", "3",
            "--tdnn_channels", "[32, 32, 64]",
            "--emb_dim", "32",
        ]
    )  # fmt: skip
    assert json.loads((out / "results.json").read_text()) == results
    assert results["loss"] == hsl.LossConfig.resolve(loss_type, num_classes=6).to_dict()
    assert len(results["classes"]) == 6
    log = (out / "train_log.txt").read_text()
    train_losses = [float(v) for v in re.findall(r"train loss: ([0-9.e+-]+)", log)]
    assert len(train_losses) == 3 and train_losses[-1] < train_losses[0]  # it learns
    assert results["test_error_rate"] < 0.75  # chance is 5/6
