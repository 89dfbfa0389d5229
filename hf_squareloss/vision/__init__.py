"""Image classification with the losses of this package: the CIFAR ResNets, image data, the papers' protocol.

Importing this package registers the CIFAR ResNet (:mod:`.resnet`) with the ``transformers`` Auto classes. The recipe
is :func:`hf_squareloss.vision.run.main` (``python -m hf_squareloss.vision.run`` or
``recipes/vision/run_image_classification.py``).
"""

from __future__ import annotations

from .resnet import (
    ARCHITECTURES,
    CifarResNetConfig,
    CifarResNetForImageClassification,
    CifarResNetModel,
    register_auto_classes,
)

register_auto_classes()

__all__ = [
    "ARCHITECTURES",
    "CifarResNetConfig",
    "CifarResNetForImageClassification",
    "CifarResNetModel",
    "register_auto_classes",
]
