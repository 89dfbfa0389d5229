"""The registry and the (k, M) presets."""

from __future__ import annotations

import ast
import inspect
import math
import re
from pathlib import Path

import pytest
import torch

import hf_squareloss as hsl
from hf_squareloss.registry import LOSSES, LossConfig, get_loss_spec, loss_types


def test_registry_lists_the_losses():
    assert loss_types() == [
        "ce",
        "square",
        "tce",
        "softmax_mse",
        "softmax_mae",
        "squentropy",
        "gce",
        "sce",
        "nce_rce",
        "focal",
    ]


@pytest.mark.parametrize("loss_type", loss_types())
def test_spec_is_consistent_with_its_function(loss_type):
    spec = get_loss_spec(loss_type)
    params = inspect.signature(spec.function).parameters
    for name in (*spec.hyperparameters, "ignore_index", "reduction"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
    for param in spec.params:  # the registry's default is the function's own default
        if not param.setting and param.default is not None and param.neutral is None:
            assert params[param.name].default == param.default
    assert getattr(hsl, spec.function.__name__) is spec.function
    assert spec.outputs in ("scores", "probabilities")
    for key in spec.references:
        assert key in hsl.BIBTEX
    assert spec.formula.startswith("$")


_MODULES = {
    "ce": hsl.CrossEntropyLoss,
    "square": hsl.SquareLoss,
    "tce": hsl.TamedCrossEntropyLoss,
    "softmax_mse": hsl.SoftmaxMSELoss,
    "softmax_mae": hsl.SoftmaxMAELoss,
    "squentropy": hsl.SquentropyLoss,
    "gce": hsl.GeneralizedCrossEntropyLoss,
    "sce": hsl.SymmetricCrossEntropyLoss,
    "nce_rce": hsl.NCERCELoss,
    "focal": hsl.FocalLoss,
}


@pytest.mark.parametrize("loss_type", loss_types())
def test_module_wrapper_has_the_registrys_parameters_and_defaults(loss_type):
    spec = get_loss_spec(loss_type)
    params = inspect.signature(_MODULES[loss_type].__init__).parameters
    assert set(params) - {"self", "ignore_index", "reduction"} == set(spec.hyperparameters)
    for param in spec.params:
        if not param.setting and param.default is not None:
            assert params[param.name].default == param.default, param.name
    module = _MODULES[loss_type]()  # and the module computes what the function computes, with those defaults
    logits, labels = torch.randn(6, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 1, -100])
    defaults = {p.name: p.default for p in spec.params if not p.setting and p.default is not None}
    if loss_type == "square":
        defaults = {"k": 1.0, "M": 1.0}
    torch.testing.assert_close(module(logits, labels), spec.function(logits, labels, **defaults))


def test_no_second_list_of_loss_types_in_the_package():
    """Only registry.py knows every loss type: no other module holds a literal, or a text, naming them all."""
    root = Path(hsl.__file__).parent
    everything = set(loss_types())
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "registry.py" or path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
                names = {
                    e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
                }
                if everything <= names:
                    offenders.append(f"{path.name}:{node.lineno}")
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and all(re.search(rf"\b{name}\b", node.value) for name in everything)
            ):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_unknown_loss_type():
    with pytest.raises(ValueError, match=r"unknown loss_type 'mse'; choose one of \['ce'"):
        get_loss_spec("mse")


@pytest.mark.parametrize(
    "num_classes,expected",
    [
        (2, (1, 1)),
        (10, (1, 1)),
        (39, (1, 1)),
        (40, (1, 15)),
        (42, (1, 15)),
        (499, (1, 15)),
        (500, (15, 30)),
        (1000, (15, 30)),
        (32000, (15, 30)),
    ],
)
def test_preset_by_number_of_classes(num_classes, expected):
    params = hsl.square_loss_preset(num_classes=num_classes)
    assert (params.k, params.M) == expected
    assert (hsl.square_loss_preset(num_classes).k, hsl.square_loss_preset(num_classes).M) == expected


@pytest.mark.parametrize(
    "name,expected",
    [
        ("timit", (1, 15)),
        ("wsj", (1, 15)),
        ("librispeech", (15, 30)),
        ("ImageNet", (15, 30)),
        ("small", (1, 1)),
    ],
)
def test_preset_by_name_is_the_papers_table(name, expected):
    params = hsl.square_loss_preset(name)
    assert (params.k, params.M) == expected and "Hui & Belkin" in params.source


def test_user_values_override_the_preset():
    assert (
        hsl.square_loss_preset("librispeech", M=10).M == 10
        and hsl.square_loss_preset("librispeech", M=10).k == 15
    )
    assert hsl.square_loss_preset(num_classes=1000, k=2, M=3).source == "user"
    with pytest.raises(ValueError, match="unknown square-loss preset"):
        hsl.square_loss_preset("cifar")
    with pytest.raises(ValueError, match="at least 2 classes"):
        hsl.square_loss_preset(num_classes=1)
    with pytest.raises(ValueError, match="k must be"):
        hsl.square_loss_preset("timit", k=0)


def test_loss_config_round_trip_and_call():
    for loss_type in loss_types():
        config = LossConfig.resolve(loss_type, num_classes=1000, alpha=0.5, label_smoothing=0.0)
        again = LossConfig.from_dict(config.to_dict())
        assert again == config and again.same_loss(config)
    square = LossConfig.resolve("square", num_classes=1000)
    assert square.params == {"k": 15.0, "M": 30.0} and square.describe() == "square (k=15, M=30)"
    logits, labels = torch.randn(5, 1000), torch.randint(0, 1000, (5,))
    torch.testing.assert_close(square(logits, labels), hsl.square_loss(logits, labels, k=15, M=30))
    assert LossConfig.resolve("tce").params == {"alpha": 1.5}
    assert LossConfig.resolve("gce").params == {"q": 0.7}
    assert LossConfig.resolve("focal").params == {"gamma": 2.0}
    assert LossConfig.resolve("sce").params == {"alpha": 0.1, "beta": 1.0, "A": math.log(1e-4)}
    assert LossConfig.resolve("nce_rce").params == {"alpha": 1.0, "beta": 1.0, "A": math.log(1e-4)}
    assert LossConfig.resolve("squentropy").params == {}
    assert LossConfig.resolve("ce", label_smoothing=0.1).params == {"label_smoothing": 0.1}
    assert not LossConfig.resolve("tce", alpha=1.0).same_loss(LossConfig.resolve("tce", alpha=1.5))
    with pytest.raises(ValueError, match="lacks"):
        LossConfig.from_dict({"loss_type": "square", "k": 1.0})
    with pytest.raises(ValueError, match="cannot be honoured"):
        LossConfig.resolve("softmax_mse", label_smoothing=0.1)
    with pytest.raises(ValueError, match="alpha must be"):
        LossConfig.resolve("square", alpha=-1)  # unused but invalid values are never silent


def test_every_loss_has_bibtex_or_is_ce():
    for spec in LOSSES.values():
        assert spec.references or spec.loss_type == "ce"
    assert "@inproceedings{hui2021evaluation" in hsl.bibtex("hui2021evaluation")
    with pytest.raises(KeyError):
        hsl.bibtex("nobody2020")


# ---------------------------------------------------------------------------------------------------------------
# parameters: validation and provenance
# ---------------------------------------------------------------------------------------------------------------
def test_parameters_are_the_chosen_losss_own():
    assert LossConfig.resolve("sce", alpha=0.5).params["alpha"] == 0.5
    assert LossConfig.resolve("tce", alpha=0.5).params == {"alpha": 0.5}
    assert LossConfig.resolve("nce_rce", alpha=2.0, beta=0.5, A=-4).params == {
        "alpha": 2.0,
        "beta": 0.5,
        "A": -4.0,
    }
    # another loss's parameter is validated, then ignored
    assert LossConfig.resolve("ce", q=0.5).params == {"label_smoothing": 0.0}
    with pytest.raises(ValueError, match=r"q must be a finite number in \(0, 1\]"):
        LossConfig.resolve("ce", q=1.5)
    with pytest.raises(ValueError, match="unknown loss parameter 'gama'"):
        LossConfig.resolve("focal", gama=2.0)
    with pytest.raises(ValueError, match="alpha and beta are both 0"):
        LossConfig.resolve("sce", alpha=0.0, beta=0.0)
    with pytest.raises(ValueError, match="A must be a finite number < 0"):
        LossConfig.resolve("sce", A=4.0)
    with pytest.raises(ValueError, match="gamma must be"):
        LossConfig.resolve("focal", gamma=-1.0)
    with pytest.raises(ValueError, match="cannot be honoured by loss_type 'gce'"):
        LossConfig.resolve("gce", label_smoothing=0.1)


def test_a_parameter_not_given_is_recorded_as_a_default():
    tce = LossConfig.resolve("tce")
    assert tce.source == "default" and tce.sources == {"alpha": "default"}
    assert LossConfig.resolve("tce", alpha=1.5).sources == {"alpha": "user"}
    sce = LossConfig.resolve("sce", beta=2.0)
    assert sce.sources == {"alpha": "default", "beta": "user", "A": "default"}
    assert sce.source == "user, rest default"
    square = LossConfig.resolve("square", num_classes=1000, M=10.0)
    assert square.sources["M"] == "user" and square.sources["k"].startswith("preset librispeech for C=1000")
    assert square.source.startswith("user, rest from preset librispeech")
    assert LossConfig.resolve("ce").sources == {"label_smoothing": "default"}
    assert LossConfig.resolve("ce", label_smoothing=0.1).sources == {"label_smoothing": "user"}
    record = sce.to_dict()
    assert record["sources"] == {"alpha": "default", "beta": "user", "A": "default"}
    assert LossConfig.from_dict(record) == sce


def test_records_saved_before_per_parameter_sources_still_load():
    old = {
        "loss_type": "tce",
        "alpha": 1.5,
        "source": "user",
        "num_classes": 2,
        "hf_squareloss_version": "0.1.0",
    }
    config = LossConfig.from_dict(old)
    assert config.params == {"alpha": 1.5} and config.source == "user" and config.sources == {"alpha": "user"}
    assert config.same_loss(LossConfig.resolve("tce"))
    square = LossConfig.from_dict(
        {"loss_type": "square", "k": 15.0, "M": 30.0, "source": "preset librispeech"}
    )
    assert square.sources == {"k": "preset librispeech", "M": "preset librispeech"}
    ce = LossConfig.from_dict({"loss_type": "ce", "label_smoothing": 0.0, "source": "user"})
    assert ce.same_loss(LossConfig.resolve("ce"))


def test_select_losses():
    from hf_squareloss.registry import select_losses

    assert select_losses(["all"]) == loss_types()
    assert select_losses(["tce", "ce", "tce"]) == ["tce", "ce"]
    with pytest.raises(ValueError, match="unknown loss_type"):
        select_losses(["hinge"])
