"""``nn.Module`` wrappers of the functional losses (the formulas and references live in :mod:`.functional`)."""

from __future__ import annotations

from torch import Tensor, nn

from . import functional as L
from .losses import focal_loss, generalized_cross_entropy, nce_rce, squentropy, symmetric_cross_entropy
from .losses.focal import DEFAULT_FOCAL_GAMMA
from .losses.gce import DEFAULT_GCE_Q
from .losses.nce_rce import DEFAULT_NCE_RCE_ALPHA, DEFAULT_NCE_RCE_BETA
from .losses.sce import DEFAULT_RCE_A, DEFAULT_SCE_ALPHA, DEFAULT_SCE_BETA, check_weights

__all__ = [
    "CrossEntropyLoss",
    "FocalLoss",
    "GeneralizedCrossEntropyLoss",
    "NCERCELoss",
    "SoftmaxMAELoss",
    "SoftmaxMSELoss",
    "SquareLoss",
    "SquentropyLoss",
    "SymmetricCrossEntropyLoss",
    "TamedCrossEntropyLoss",
]


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

    def __init__(
        self, alpha: float = L.DEFAULT_TCE_ALPHA, ignore_index: int = -100, reduction: str = "mean"
    ) -> None:
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


class SquentropyLoss(_ClassificationLoss):
    """Squentropy (cross-entropy plus the mean square of the non-target logits); see :func:`hf_squareloss.squentropy`."""

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return squentropy(logits, labels, ignore_index=self.ignore_index, reduction=self.reduction)


class GeneralizedCrossEntropyLoss(_ClassificationLoss):
    """Generalized cross-entropy; see :func:`hf_squareloss.generalized_cross_entropy`."""

    def __init__(self, q: float = DEFAULT_GCE_Q, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(ignore_index, reduction)
        self.q = L.check_unit_interval("q", q)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return generalized_cross_entropy(
            logits, labels, q=self.q, ignore_index=self.ignore_index, reduction=self.reduction
        )

    def extra_repr(self) -> str:
        return f"q={self.q:g}, ignore_index={self.ignore_index}, reduction={self.reduction!r}"


class SymmetricCrossEntropyLoss(_ClassificationLoss):
    """Symmetric cross-entropy; see :func:`hf_squareloss.symmetric_cross_entropy`."""

    def __init__(
        self,
        alpha: float = DEFAULT_SCE_ALPHA,
        beta: float = DEFAULT_SCE_BETA,
        A: float = DEFAULT_RCE_A,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(ignore_index, reduction)
        self.alpha, self.beta = check_weights(alpha, beta)
        self.A = L.check_negative("A", A)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return symmetric_cross_entropy(
            logits,
            labels,
            alpha=self.alpha,
            beta=self.beta,
            A=self.A,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}, beta={self.beta:g}, A={self.A:.4g}, reduction={self.reduction!r}"


class NCERCELoss(_ClassificationLoss):
    """Normalized cross-entropy plus reverse cross-entropy; see :func:`hf_squareloss.nce_rce`."""

    def __init__(
        self,
        alpha: float = DEFAULT_NCE_RCE_ALPHA,
        beta: float = DEFAULT_NCE_RCE_BETA,
        A: float = DEFAULT_RCE_A,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(ignore_index, reduction)
        self.alpha, self.beta = check_weights(alpha, beta)
        self.A = L.check_negative("A", A)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return nce_rce(
            logits,
            labels,
            alpha=self.alpha,
            beta=self.beta,
            A=self.A,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}, beta={self.beta:g}, A={self.A:.4g}, reduction={self.reduction!r}"


class FocalLoss(_ClassificationLoss):
    """Focal loss; see :func:`hf_squareloss.focal_loss`."""

    def __init__(
        self, gamma: float = DEFAULT_FOCAL_GAMMA, ignore_index: int = -100, reduction: str = "mean"
    ) -> None:
        super().__init__(ignore_index, reduction)
        self.gamma = L.check_nonnegative("gamma", gamma)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return focal_loss(
            logits, labels, gamma=self.gamma, ignore_index=self.ignore_index, reduction=self.reduction
        )

    def extra_repr(self) -> str:
        return f"gamma={self.gamma:g}, ignore_index={self.ignore_index}, reduction={self.reduction!r}"
