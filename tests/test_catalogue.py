"""``hf-squareloss losses``: what it prints is usable as printed, and its defaults are the functions' own."""

from __future__ import annotations

import inspect
import json

import pytest

from hf_squareloss.catalogue import loss_catalogue
from hf_squareloss.cli import main
from hf_squareloss.registry import LossConfig, get_loss_spec, loss_types
from hf_squareloss.training_args import training_arguments_class


@pytest.mark.parametrize("loss_type", loss_types())
def test_every_flag_parses_and_every_yaml_key_resolves_to_the_printed_default(loss_type, tmp_path):
    from transformers import HfArgumentParser

    (entry,) = loss_catalogue([loss_type])
    signature = inspect.signature(get_loss_spec(loss_type).function).parameters
    parser = HfArgumentParser((training_arguments_class(),))
    for param in entry["params"]:
        if param["default"] is None:
            continue
        # the default printed is the loss function's own keyword default (read from its signature here)
        if param["name"] in signature:
            assert signature[param["name"]].default == param["default"]
        value = str(param["default"])
        (args,) = parser.parse_args_into_dataclasses(
            [
                "--output_dir",
                str(tmp_path),
                "--loss_type",
                loss_type,
                param["flag"],
                value,
                "--report_to",
                "none",
            ]
        )
        assert args.loss_config(3).params[param["name"]] == pytest.approx(param["default"])
        # the YAML key is the keyword LogitsLoss (and LossConfig.resolve) takes
        config = LossConfig.resolve(loss_type, num_classes=3, **{param["yaml_key"]: param["default"]})
        assert config.params[param["name"]] == pytest.approx(param["default"])


def test_the_list_names_every_loss_and_json_carries_the_bibtex(capsys):
    assert main(["losses"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[: len(loss_types())]] == loss_types()
    assert main(["losses", "all", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["loss_type"] for e in entries] == loss_types()
    sce = next(e for e in entries if e["loss_type"] == "sce")
    assert sce["references"]["wang2019symmetric"].startswith("@")
    assert {p["flag"] for p in sce["params"]} == {"--sce_alpha", "--sce_beta", "--sce_a"}


def test_an_unknown_loss_is_refused_with_the_choices(capsys):
    assert main(["losses", "hinge_of_nowhere"]) == 2
    err = capsys.readouterr().err
    assert "unknown loss_type 'hinge_of_nowhere'" in err and "'squentropy'" in err
