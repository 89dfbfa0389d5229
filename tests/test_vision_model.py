"""The CIFAR ResNets: parameter counts against He et al.'s, shapes, the shortcut, the loss, save/load through the Auto
classes, and a push to the local Hub stand-in."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hf_squareloss.functional import cross_entropy
from hf_squareloss.vision import (
    ARCHITECTURES,
    CifarResNetConfig,
    CifarResNetForImageClassification,
    CifarResNetModel,
)


def expected_parameters(depth: int, num_classes: int, channels: int = 3, widths=(16, 32, 64)) -> int:
    """Counted by hand from the architecture: 3x3 convolutions without bias, each followed by a batch norm (2 per
    channel), option-A shortcuts without parameters, and a linear classifier."""
    n = (depth - 2) // 6
    conv = 9 * channels * widths[0]
    bn = 2 * widths[0]
    previous = widths[0]
    for width in widths:
        conv += 9 * previous * width + 9 * width * width * (2 * n - 1)
        bn += 2 * width * 2 * n
        previous = width
    return conv + bn + widths[-1] * num_classes + num_classes


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "millions"), [("resnet20", 0.27), ("resnet32", 0.46), ("resnet56", 0.85)])
def test_parameter_counts_are_he_et_al(name: str, millions: float) -> None:
    model = CifarResNetForImageClassification(CifarResNetConfig.from_name(name, num_labels=10))
    count = _count(model)
    assert count == expected_parameters(ARCHITECTURES[name], 10)
    assert round(count / 1e6, 2) == millions  # the paper's Table 6
    if name == "resnet20":
        assert count == 269_722


def test_shapes_through_the_stages() -> None:
    config = CifarResNetConfig.from_name("resnet20", num_labels=7, num_channels=1)
    model = CifarResNetForImageClassification(config).eval()
    out = model(torch.randn(3, 1, 32, 32), output_hidden_states=True)
    assert out.logits.shape == (3, 7)
    assert [tuple(h.shape[1:]) for h in out.hidden_states] == [
        (16, 32, 32),
        (16, 32, 32),
        (32, 16, 16),
        (64, 8, 8),
    ]
    assert model(torch.randn(2, 1, 16, 16)).logits.shape == (2, 7)  # any size: global average pooling
    assert expected_parameters(20, 7, channels=1) == _count(model)
    with pytest.raises(ValueError, match=r"\(batch, 1, height, width\)"):
        model(torch.randn(2, 3, 32, 32))


def test_zero_pad_shortcut_is_subsampling_plus_zero_channels() -> None:
    torch.manual_seed(0)
    body = CifarResNetModel(CifarResNetConfig(depth=8)).eval()
    block = body.stages[1][0]  # 16 -> 32 channels, stride 2
    x = torch.randn(2, 16, 8, 8)
    y = block.shortcut(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, :8]) == 0 and torch.count_nonzero(y[:, 24:]) == 0
    projection = CifarResNetForImageClassification(CifarResNetConfig(depth=20, shortcut="projection"))
    extra = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)  # two 1x1 convolutions with their batch norms
    assert _count(projection) == expected_parameters(20, 2) + extra


def test_model_loss_is_cross_entropy_and_ours_matches_it() -> None:
    torch.manual_seed(1)
    model = CifarResNetForImageClassification(CifarResNetConfig.from_name("resnet20", num_labels=10)).eval()
    x, labels = torch.randn(5, 3, 16, 16), torch.tensor([0, 3, 9, 3, 1])
    out = model(x, labels=labels)
    log_q = out.logits.log_softmax(-1)
    assert torch.allclose(out.loss, -log_q[torch.arange(5), labels].mean(), atol=1e-6)
    assert torch.allclose(cross_entropy(out.logits, labels, reduction="mean"), out.loss, atol=1e-6)
    with pytest.raises(ValueError, match="one class index per image"):
        model(x, labels=labels[:3])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depth": 21}, "6n \\+ 2"),
        ({"depth": 2}, "6n \\+ 2"),
        ({"widths": (16, 32)}, "three"),
        ({"shortcut": "dense"}, "shortcut"),
        ({"widths": (64, 32, 16)}, "non-decreasing"),
        ({"num_channels": 0}, "num_channels"),
    ],
)
def test_bad_configs_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CifarResNetConfig(**kwargs)
    with pytest.raises(ValueError, match="resnet20"):
        CifarResNetConfig.from_name("resnet18")


def test_save_and_load_through_the_auto_classes(tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

    torch.manual_seed(2)
    config = CifarResNetConfig.from_name("resnet32", num_labels=3, id2label={0: "a", 1: "b", 2: "c"})
    model = CifarResNetForImageClassification(config)
    model.train()
    model(torch.randn(8, 3, 16, 16))  # moves the batch-norm running statistics away from their initial values
    model.eval()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "cifar_resnet" and saved["depth"] == 32
    assert saved["architectures"] == ["CifarResNetForImageClassification"]
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is CifarResNetForImageClassification
    assert loaded.config.id2label == {0: "a", 1: "b", 2: "c"}
    x = torch.randn(4, 3, 16, 16)
    assert torch.equal(model(x).logits, loaded(x).logits)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), CifarResNetConfig)
    body = AutoModel.from_pretrained(tmp_path).eval()
    assert torch.allclose(body(x).pooler_output, model.resnet(x).pooler_output)
    # fresh models are initialised (not left at torch's or zero values)
    fresh = CifarResNetForImageClassification(config)
    assert float(fresh.resnet.stem.weight.detach().std()) == pytest.approx(
        (2 / (16 * 9)) ** 0.5, rel=0.25
    )  # He, fan_out


def test_push_to_the_hub_stand_in(tmp_path: Path) -> None:
    from hub_server import serve
    from test_hub import _env

    server, _ = serve("hf_test_token")
    try:
        script = textwrap.dedent(
            f"""
            import torch
            from hf_squareloss.vision import CifarResNetConfig, CifarResNetForImageClassification
            torch.manual_seed(0)
            model = CifarResNetForImageClassification(CifarResNetConfig.from_name("resnet20", num_labels=10))
            model.save_pretrained({str(tmp_path / "local")!r})
            model.push_to_hub("tester/resnet20-digits")
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", script],
            env=_env(tmp_path, server.url, "hf_test_token"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        files = server.repos["tester/resnet20-digits"]
        for name in ("config.json", "model.safetensors"):
            assert files[name] == (tmp_path / "local" / name).read_bytes(), name
    finally:
        server.shutdown()


def test_gradient_flows_to_every_parameter() -> None:
    torch.manual_seed(3)
    model = CifarResNetForImageClassification(CifarResNetConfig.from_name("resnet20", num_labels=4))
    loss = F.cross_entropy(model(torch.randn(4, 3, 8, 8)).logits, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
