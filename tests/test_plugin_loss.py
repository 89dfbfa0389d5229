"""A loss registered from outside the package reaches every place that lists losses or their parameters.

The throwaway loss is a weighted multi-class hinge loss (Crammer & Singer), defined in tests/scripts/hinge_plugin.py:
``weight * max(0, margin + max_{i != y} f_i - f_y)``; the package learns of it only through ``register_loss``.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import HfArgumentParser

import hf_squareloss as hsl
from hf_squareloss import citations
from hf_squareloss.registry import LOSSES, LossConfig, LossParam, LossSpec, loss_fields, register_loss

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
import one_step
from hinge_plugin import BIB, FORMULA, KEY, NAME, SPEC, hinge_loss


def hinge_reference(logits, labels, weight, margin):
    """Independent per-item formula with Python loops."""
    out = []
    for f, y in zip(logits.double().tolist(), labels.tolist()):
        if y == -100:
            out.append(0.0)
            continue
        out.append(weight * max(0.0, margin + max(v for i, v in enumerate(f) if i != y) - f[y]))
    return torch.tensor(out, dtype=torch.float64)


REGISTER_AND_PRINT_FIELDS = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent / "scripts")!r})
from hinge_plugin import SPEC, BIB, KEY
from hf_squareloss.registry import register_loss
register_loss(SPEC, bibtex={{KEY: BIB}})
from hf_squareloss import SquareLossTrainingArguments
from transformers import HfArgumentParser
(args,) = HfArgumentParser((SquareLossTrainingArguments,)).parse_args_into_dataclasses(
    ["--output_dir", "x", "--loss_type", "hinge", "--hinge_margin", "0.5", "--report_to", "none"]
)
print(args.loss_config(3).to_dict())
"""


@pytest.fixture
def hinge():
    register_loss(SPEC, bibtex={KEY: BIB})
    yield SPEC
    LOSSES.pop(NAME, None)
    citations.BIBTEX.pop(KEY, None)


def _data(n=10, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=torch.float64)
    labels = torch.randint(0, c, (n,), generator=g)
    labels[3] = -100
    return logits, labels


def test_the_throwaway_loss_is_what_it_says():
    logits, labels = _data()
    torch.testing.assert_close(
        hinge_loss(logits, labels, weight=2.0, margin=0.5, reduction="none"),
        hinge_reference(logits, labels, 2.0, 0.5),
    )


def test_registration_is_checked():
    with pytest.raises(ValueError, match="already registered"):
        register_loss(LOSSES["tce"])
    with pytest.raises(ValueError, match="lower case"):
        register_loss(LossSpec("Hinge", hinge_loss, "scores", True, "t", "$x$"))
    with pytest.raises(ValueError, match="no keyword argument"):
        register_loss(
            LossSpec(
                NAME, hinge_loss, "scores", True, "t", "$x$", params=(LossParam("scale", "s", default=1.0),)
            )
        )
    with pytest.raises(ValueError, match="no BibTeX"):
        register_loss(LossSpec(NAME, hinge_loss, "scores", True, "t", "$x$", references=("nobody",)))
    clash = LossSpec(
        "tce_x", hinge_loss, "scores", True, "t", "$x$", params=(LossParam("weight", "w", field="tce_alpha"),)
    )
    with pytest.raises(ValueError, match="already used"):
        register_loss(clash)
    assert NAME not in LOSSES


def test_registry_resolves_records_and_validates(hinge):
    config = LossConfig.resolve(NAME, margin=0.5)
    assert config.params == {"weight": 1.0, "margin": 0.5}
    assert config.sources == {"weight": "default", "margin": "user"}
    assert LossConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="margin must be a finite number > 0"):
        LossConfig.resolve(NAME, margin=-1)
    logits, labels = _data()
    torch.testing.assert_close(
        config(logits, labels, reduction="sum"), hinge_reference(logits, labels, 1.0, 0.5).sum()
    )
    # its outputs are scores: read as they are (M = 1), no softmax
    torch.testing.assert_close(hsl.logits_to_scores(logits, config), logits)
    assert hsl.pipeline_kwargs(NAME) == {"function_to_apply": "none"}


def test_training_arguments_have_its_fields(hinge):
    from hf_squareloss.training_args import training_arguments_class

    cls = training_arguments_class()
    parser = HfArgumentParser((cls,))
    help_text = " ".join(parser.format_help().split())
    assert "--hinge_weight" in help_text and "--hinge_margin" in help_text
    assert "margin > 0 between the true class and the others" in help_text
    assert "'hinge': multi-class hinge loss" in help_text and "When not set: 1." in help_text
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", "x", "--loss_type", NAME, "--hinge_weight", "3", "--report_to", "none"]
    )
    assert args.loss_config(4).params == {"weight": 3.0, "margin": 1.0}
    with pytest.raises(ValueError, match="--hinge_margin: margin must be"):
        cls(output_dir="x", loss_type="ce", hinge_margin=0.0, report_to=[])
    # the Trainer pickles its arguments into every checkpoint (training_args.bin)
    again = pickle.loads(pickle.dumps(args))
    assert type(again) is cls and again.hinge_weight == 3.0


def test_the_import_time_class_is_built_from_the_registry():
    """The class built at import has exactly the registry's fields, with the registry's help..."""
    from dataclasses import fields

    from transformers import TrainingArguments

    base = {f.name for f in fields(TrainingArguments)}
    ours = {f.name: f for f in fields(hsl.SquareLossTrainingArguments) if f.name not in base}
    assert set(ours) == {"loss_type", "loss_from_hidden_states"} | (set(loss_fields()) - base)
    for name, (_, param) in loss_fields().items():
        if name in ours:
            assert param.help in ours[name].metadata["help"]
    assert ours["loss_type"].metadata["choices"] == hsl.loss_types()


def test_a_loss_registered_before_the_import_gets_its_fields(tmp_path):
    """... and a loss registered before ``hf_squareloss.training_args`` is imported is in it."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(REGISTER_AND_PRINT_FIELDS)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = eval(proc.stdout.strip().splitlines()[-1])  # a dict literal printed by the child
    assert record["loss_type"] == NAME and record["weight"] == 1.0 and record["margin"] == 0.5
    assert record["sources"] == {"weight": "default", "margin": "user"}


def test_compute_loss_func_and_trainer(hinge, tmp_path):
    from hf_squareloss import LossFunction, SquareLossTrainer, make_compute_loss_func
    from hf_squareloss.training_args import training_arguments_class

    logits, labels = _data(c=3)
    fn = make_compute_loss_func(NAME, weight=2.0)
    assert isinstance(fn, LossFunction)
    torch.testing.assert_close(
        fn({"logits": logits}, labels, num_items_in_batch=torch.tensor(20)),
        hinge_reference(logits, labels, 2.0, 1.0).sum() / 20,
    )
    cls = training_arguments_class()
    args = cls(output_dir=str(tmp_path), report_to=[], use_cpu=True, save_strategy="no")
    model = one_step.tiny_bert()
    trainer = SquareLossTrainer(model=model, args=args, loss_type=NAME, hinge_margin=0.25)
    assert args.loss_type == NAME and args.hinge_margin == 0.25
    assert trainer.loss_function.config.params == {"weight": 1.0, "margin": 0.25}
    record = model.config.hf_squareloss
    assert (
        record["loss_type"] == NAME and record["margin"] == 0.25 and record["sources"]["weight"] == "default"
    )
    model.save_pretrained(tmp_path / "ckpt")
    trainer.check_resume_compatible(tmp_path / "ckpt")
    other = SquareLossTrainer(
        model=one_step.tiny_bert(),
        args=cls(output_dir=str(tmp_path), report_to=[], use_cpu=True, loss_type=NAME, hinge_margin=0.5),
    )
    with pytest.raises(ValueError, match=r"trained with hinge \(weight=1, margin=0.25\)"):
        other.check_resume_compatible(tmp_path / "ckpt")


def test_speechbrain_logits_loss(hinge):
    from hf_squareloss.speechbrain import LogitsLoss, logits_loss

    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 4, (2, 5), generator=g)
    length = torch.tensor([1.0, 0.6])  # the second utterance has 3 counted frames
    got = logits_loss(logits, targets, length, reduction="sum", loss_type=NAME, margin=2.0)
    expected = (
        hinge_reference(logits[0], targets[0], 1.0, 2.0).sum()
        + hinge_reference(logits[1, :3], targets[1, :3], 1.0, 2.0).sum()
    )
    torch.testing.assert_close(got, expected)
    module = LogitsLoss(NAME, num_classes=4, margin=2.0, reduction="sum")
    torch.testing.assert_close(module(logits, targets, length), expected)


def test_demo_and_compare_offer_it(hinge):
    from hf_squareloss.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["demo", "--losses", NAME]).losses == [NAME]
    ns = parser.parse_args(
        ["compare", "--output_dir", "o", "--model_name_or_path", "m", "--tasks", "mrpc", "--losses", "all"]
    )
    from hf_squareloss.compare.command import _spec

    assert NAME in _spec(ns).losses
    from hf_squareloss.demo import DemoConfig

    config = DemoConfig(losses=("all",))
    config.validate()
    assert NAME in config.losses


def test_model_card_gives_its_formula_and_citation(hinge):
    from hf_squareloss.model_card import ModelCardInfo, render_model_card

    record = {**LossConfig.resolve(NAME, weight=2.0).to_dict(), "num_classes": 3}
    card = render_model_card(ModelCardInfo(model_name="m", loss=record))
    assert FORMULA in card
    assert "@article{crammer2001algorithmic" in card
    assert "multi-class hinge loss (Crammer & Singer, 2001)" in card
    assert "weight = 2, margin = 1 (source: weight: user, margin: default)" in card


def test_hf_squareloss_losses_lists_it_with_its_flags_and_citation(hinge, capsys):
    from hf_squareloss.cli import main

    assert main(["losses"]) == 0
    assert any(line.startswith(f"{NAME} ") for line in capsys.readouterr().out.splitlines())
    assert main(["losses", NAME]) == 0
    out = capsys.readouterr().out
    assert FORMULA in out and "--hinge_margin / margin: 1" in out and f"reference: {KEY}" in out
    assert main(["losses", NAME, "--json"]) == 0
    (entry,) = __import__("json").loads(capsys.readouterr().out)
    assert entry["references"] == {KEY: BIB} and entry["outputs"] == "scores"
