"""The image recipe's model: a CIFAR ResNet trained from scratch or any pretrained image classifier, with the
settings of its image processor, and the image processor a finished run saves beside it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .arguments import ImageModelArguments

__all__ = ["PIPELINE_PROCESSOR_NOTE", "build_model", "image_processor_settings", "save_image_processor"]

logger = logging.getLogger(__name__)

PIPELINE_PROCESSOR_NOTE = (
    "none saved: pipelines feed RGB images, and this model takes 1 channel; train with --num_channels 3 (grey "
    "images repeated to 3 channels) for a model that pipeline('image-classification') can serve"
)


def _grey(image: Any) -> bool:
    return getattr(image, "mode", "RGB") in ("1", "L", "LA", "I", "I;16", "F")


def build_model(
    model_args: ImageModelArguments, label_names: Sequence[str], first_image: Any
) -> tuple[Any, int]:
    """``(model, input channels)``: with ``--model_type`` a CIFAR ResNet from scratch (1 channel for grey training
    images unless ``--num_channels``), else the pretrained classifier with a head for ``label_names``."""
    from transformers import AutoConfig, AutoModelForImageClassification

    from .resnet import CifarResNetConfig, CifarResNetForImageClassification

    labels = {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {n: i for i, n in enumerate(label_names)},
    }
    if model_args.model_type is not None:
        channels = model_args.num_channels or (1 if _grey(first_image) else 3)
        config = CifarResNetConfig.from_name(model_args.model_type, num_channels=channels, **labels)
        return CifarResNetForImageClassification(config), channels
    hub = {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision}
    config = AutoConfig.from_pretrained(
        model_args.config_name or model_args.model_name_or_path, **labels, **hub
    )
    model = AutoModelForImageClassification.from_pretrained(
        model_args.model_name_or_path,
        config=config,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        **hub,
    )
    return model, int(getattr(config, "num_channels", 3))


def image_processor_settings(model_args: ImageModelArguments) -> dict[str, Any]:
    """Size, mean and std of a pretrained model's image processor ({} when it has none)."""
    if model_args.model_name_or_path is None:
        return {}
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(
            model_args.model_name_or_path, cache_dir=model_args.cache_dir, revision=model_args.model_revision
        )
    except (OSError, ValueError) as err:
        logger.info("no image processor for %s (%s)", model_args.model_name_or_path, err)
        return {}
    out: dict[str, Any] = {}
    size = getattr(processor, "size", None) or {}
    if isinstance(size, dict):
        size = dict(size)
    else:
        size = {k: getattr(size, k, None) for k in ("height", "width", "shortest_edge")}
    if size.get("height") and size.get("width"):
        out["size"] = (int(size["height"]), int(size["width"]))
    elif size.get("shortest_edge"):
        out["size"] = (int(size["shortest_edge"]),) * 2
    if (
        getattr(processor, "image_mean", None) is not None
        and getattr(processor, "image_std", None) is not None
    ):
        out["mean"] = [float(v) for v in processor.image_mean]
        out["std"] = [float(v) for v in processor.image_std]
    return out


def save_image_processor(
    output_dir: Path, mean: Sequence[float], std: Sequence[float], size: tuple[int, int] | None
) -> None:
    """Save, beside the model, the image processor that repeats the evaluation transform of this run.

    RGB, resized to ``size`` (bilinear), scaled to [0, 1], normalised with ``mean`` / ``std``: what
    :class:`hf_squareloss.vision.transforms.ImageTransform` does without augmentation, so that
    ``pipeline("image-classification", model=output_dir)`` serves the model as it was evaluated.
    """
    from PIL import Image
    from transformers import ViTImageProcessor

    processor = ViTImageProcessor(
        do_resize=size is not None,
        size={"height": size[0], "width": size[1]} if size else None,
        resample=Image.BILINEAR,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[float(v) for v in mean],
        image_std=[float(v) for v in std],
    )
    processor.save_pretrained(output_dir)
