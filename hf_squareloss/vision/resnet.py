"""The CIFAR ResNets of He et al. (2016), section 4.2, as a ``transformers`` model: ResNet-20, -32, -56 (and any
depth ``6n + 2``).

A 3x3 convolution with 16 filters, then three stages of ``n`` basic blocks (two 3x3 convolutions with batch
normalisation) with 16, 32 and 64 filters on feature maps of 32x32, 16x16 and 8x8 (for 32x32 inputs; the first block
of stages 2 and 3 halves the resolution with stride 2), global average pooling and a linear classifier. There is no
max-pooling. Shortcuts are identities; where a stage doubles the width, the shortcut subsamples and pads the new
channels with zeros ("option A" of the paper, no parameters), which gives ResNet-20 its 0.27 M parameters
(269,722 with 10 classes). ``shortcut="projection"`` uses a 1x1 convolution there instead ("option B").

Importing :mod:`hf_squareloss.vision` registers the config and models with the Auto classes, so that
``AutoModelForImageClassification.from_pretrained(folder)`` loads a saved model and ``push_to_hub`` pushes it like
any ``transformers`` model::

    from hf_squareloss.vision import CifarResNetConfig, CifarResNetForImageClassification

    model = CifarResNetForImageClassification(CifarResNetConfig.from_name("resnet20", num_labels=10))

Reference: K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import (
    BaseModelOutputWithPoolingAndNoAttention,
    ImageClassifierOutputWithNoAttention,
)

__all__ = [
    "ARCHITECTURES",
    "CifarResNetConfig",
    "CifarResNetForImageClassification",
    "CifarResNetModel",
    "CifarResNetPreTrainedModel",
]

ARCHITECTURES: dict[str, int] = {"resnet20": 20, "resnet32": 32, "resnet56": 56}
"""Named CIFAR ResNets and their depth (``6n + 2`` layers with weights)."""

SHORTCUTS = ("zero_pad", "projection")


class CifarResNetConfig(PreTrainedConfig):
    """Configuration of a CIFAR ResNet.

    Args:
        depth: layers with weights, ``6n + 2`` (20, 32, 44, 56, 110...): ``n`` blocks per stage.
        num_channels: channels of the input images (3 for colour, 1 for grey-level digits).
        widths: filters of the three stages (the stem has ``widths[0]``).
        shortcut: ``"zero_pad"`` (option A, parameter-free) or ``"projection"`` (option B, 1x1 convolution) where
            a stage changes the width.
        batch_norm_eps, batch_norm_momentum: of every batch normalisation.
        num_labels, id2label, label2id: the classes, as in every ``transformers`` config.
    """

    model_type = "cifar_resnet"

    depth: int = 20
    num_channels: int = 3
    widths: list[int] | tuple[int, ...] = (16, 32, 64)
    shortcut: str = "zero_pad"
    batch_norm_eps: float = 1e-5
    batch_norm_momentum: float = 0.1

    def __post_init__(self, **kwargs) -> None:
        depth = self.depth
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 56...), got {depth!r}")
        widths = [int(w) for w in self.widths]
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"widths must be three positive numbers of filters, got {widths!r}")
        if self.shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {self.shortcut!r}")
        if self.shortcut == "zero_pad" and any(b < a for a, b in itertools.pairwise(widths)):
            raise ValueError(f"zero_pad shortcuts need non-decreasing widths, got {widths}; use 'projection'")
        if (
            isinstance(self.num_channels, bool)
            or not isinstance(self.num_channels, int)
            or self.num_channels < 1
        ):
            raise ValueError(f"num_channels must be a positive integer, got {self.num_channels!r}")
        self.widths = widths
        super().__post_init__(**kwargs)

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 2) // 6

    @classmethod
    def from_name(cls, name: str, **kwargs) -> CifarResNetConfig:
        """``"resnet20"``, ``"resnet32"`` or ``"resnet56"`` (see :data:`ARCHITECTURES`), with other settings."""
        if name not in ARCHITECTURES:
            raise ValueError(f"unknown CIFAR ResNet {name!r}; choose one of {list(ARCHITECTURES)}")
        return cls(depth=ARCHITECTURES[name], **kwargs)


class _Shortcut(nn.Module):
    """Identity; or, where the block changes resolution or width, subsample + zero channels (A) or a 1x1 conv (B)."""

    def __init__(self, config: CifarResNetConfig, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad = out_channels - in_channels
        self.projection: nn.Module | None = None
        if (stride != 1 or self.pad) and config.shortcut == "projection":
            self.projection = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels, eps=config.batch_norm_eps, momentum=config.batch_norm_momentum),
            )

    def forward(self, x: Tensor) -> Tensor:
        if self.projection is not None:
            return self.projection(x)
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x


class _BasicBlock(nn.Module):
    """conv3x3 - BN - ReLU - conv3x3 - BN, plus the shortcut, then ReLU."""

    def __init__(self, config: CifarResNetConfig, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        bn = {"eps": config.batch_norm_eps, "momentum": config.batch_norm_momentum}
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels, **bn)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels, **bn)
        self.shortcut = _Shortcut(config, in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNetPreTrainedModel(PreTrainedModel):
    config_class = CifarResNetConfig
    base_model_prefix = "resnet"
    main_input_name = "pixel_values"
    _no_split_modules: ClassVar[list[str]] = ["_BasicBlock"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # He et al.'s initialisation (He, Zhang, Ren & Sun, ICCV 2015) for the convolutions and the classifier
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)


class CifarResNetModel(CifarResNetPreTrainedModel):
    """The convolutional body: ``pixel_values (N, num_channels, H, W)`` -> pooled features ``(N, widths[-1])``."""

    def __init__(self, config: CifarResNetConfig) -> None:
        super().__init__(config)
        w = config.widths
        self.stem = nn.Conv2d(config.num_channels, w[0], 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(w[0], eps=config.batch_norm_eps, momentum=config.batch_norm_momentum)
        stages = []
        in_channels = w[0]
        for i, width in enumerate(w):
            blocks = []
            for j in range(config.blocks_per_stage):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(_BasicBlock(config, in_channels, width, stride))
                in_channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.post_init()

    def forward(
        self,
        pixel_values: Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutputWithPoolingAndNoAttention | tuple:
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"pixel_values must be (batch, {self.config.num_channels}, height, width), got "
                f"{tuple(pixel_values.shape)}"
            )
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        hidden = F.relu(self.stem_bn(self.stem(pixel_values)))
        states: list[Tensor] = [hidden]
        for stage in self.stages:
            hidden = stage(hidden)
            states.append(hidden)
        pooled = hidden.mean(dim=(2, 3))
        hidden_states = tuple(states) if output_hidden_states else None
        if not return_dict:
            return tuple(v for v in (hidden, pooled, hidden_states) if v is not None)
        return BaseModelOutputWithPoolingAndNoAttention(
            last_hidden_state=hidden, pooler_output=pooled, hidden_states=hidden_states
        )


class CifarResNetForImageClassification(CifarResNetPreTrainedModel):
    """The CIFAR ResNet with its linear classifier: ``logits (N, num_labels)``.

    Given ``labels``, the returned ``loss`` is the mean softmax cross-entropy (as in every ``transformers``
    image classifier); :class:`~hf_squareloss.SquareLossTrainer` computes its own loss from the logits instead.
    """

    def __init__(self, config: CifarResNetConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.resnet = CifarResNetModel(config)
        self.classifier = nn.Linear(config.widths[-1], config.num_labels)
        self.post_init()

    def forward(
        self,
        pixel_values: Tensor,
        labels: Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> ImageClassifierOutputWithNoAttention | tuple:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.resnet(pixel_values, output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(outputs.pooler_output)
        loss = None
        if labels is not None:
            if labels.shape != logits.shape[:1]:
                raise ValueError(
                    f"labels must hold one class index per image, shape {tuple(logits.shape[:1])}, got "
                    f"{tuple(labels.shape)}"
                )
            loss = F.cross_entropy(logits, labels.to(logits.device))
        if not return_dict:
            out = (logits,) + ((outputs.hidden_states,) if outputs.hidden_states is not None else ())
            return ((loss, *out)) if loss is not None else out
        return ImageClassifierOutputWithNoAttention(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states
        )


def register_auto_classes() -> None:
    """Register the config and models with ``AutoConfig``, ``AutoModel`` and ``AutoModelForImageClassification``
    (idempotent)."""
    from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

    with contextlib.suppress(ValueError):  # already registered
        AutoConfig.register(CifarResNetConfig.model_type, CifarResNetConfig)
    for auto, model in (
        (AutoModel, CifarResNetModel),
        (AutoModelForImageClassification, CifarResNetForImageClassification),
    ):
        with contextlib.suppress(ValueError):
            auto.register(CifarResNetConfig, model)
