"""``nn.Module`` wrappers of the functional losses (the formulas and references live in :mod:`.functional`)."""

from __future__ import annotations

from torch import Tensor, nn

from . import functional as L

__all__ = ["CrossEntropyLoss", "SoftmaxMAELoss", "SoftmaxMSELoss", "SquareLoss", "TamedCrossEntropyLoss"]


class _ClassificationLoss(nn.Module):
    def __init__(self, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in L.REDUCTIONS:
            raise ValueError(f"reduction must be one of {L.REDUCTIONS}, got {reduction!r}")
        self.ignore_index = int(ignore_index)
        self.reduction = reduction


class SquareLoss(_ClassificationLoss):
    """Rescaled square loss on raw logits; see :func:`hf_squareloss.square_loss`."""

    def __init__(
        self, k: float = 1.0, M: float = 1.0, ignore_index: int = -100, reduction: str = "mean"
    ) -> None:
        super().__init__(ignore_index, reduction)
        self.k = L.check_positive("k", k)
        self.M = L.check_positive("M", M)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return L.square_loss(
            logits, labels, k=self.k, M=self.M, ignore_index=self.ignore_index, reduction=self.reduction
        )

    def extra_repr(self) -> str:
        return f"k={self.k:g}, M={self.M:g}, ignore_index={self.ignore_index}, reduction={self.reduction!r}"


class TamedCrossEntropyLoss(_ClassificationLoss):
    """Tamed Cross Entropy; see :func:`hf_squareloss.tamed_cross_entropy`."""

    def __init__(self, alpha: float = 1.5, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(ignore_index, reduction)
        self.alpha = L.check_alpha(alpha)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return L.tamed_cross_entropy(
            logits, labels, alpha=self.alpha, ignore_index=self.ignore_index, reduction=self.reduction
        )

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}, ignore_index={self.ignore_index}, reduction={self.reduction!r}"


class CrossEntropyLoss(_ClassificationLoss):
    """Cross-entropy with the class dimension last; see :func:`hf_squareloss.cross_entropy`."""

    def __init__(
        self, label_smoothing: float = 0.0, ignore_index: int = -100, reduction: str = "mean"
    ) -> None:
        super().__init__(ignore_index, reduction)
        self.label_smoothing = L.check_label_smoothing(label_smoothing)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return L.cross_entropy(
            logits,
            labels,
            label_smoothing=self.label_smoothing,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


class SoftmaxMSELoss(_ClassificationLoss):
    """Squared error of the softmax against the one-hot target; see :func:`hf_squareloss.softmax_mse`."""

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return L.softmax_mse(logits, labels, ignore_index=self.ignore_index, reduction=self.reduction)


class SoftmaxMAELoss(_ClassificationLoss):
    """Absolute error of the softmax against the one-hot target; see :func:`hf_squareloss.softmax_mae`."""

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return L.softmax_mae(logits, labels, ignore_index=self.ignore_index, reduction=self.reduction)
