"""The one registry of loss types: ``loss_type`` -> loss function, hyper-parameters and documentation.

Everything else in the package (training arguments, Trainer, recipes, model cards, the SpeechBrain hook) asks this
module which losses exist and how to build them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from . import functional as L
from .presets import square_loss_preset

__all__ = ["LOSSES", "LossConfig", "LossSpec", "get_loss_spec", "loss_types"]


@dataclass(frozen=True)
class LossSpec:
    """What the package knows about one loss type."""

    loss_type: str
    function: Callable[..., Tensor]
    hyperparameters: tuple[str, ...]
    """Keyword arguments of ``function`` that carry the loss's own hyper-parameters."""
    outputs: str
    """``"scores"`` when the trained logits are not meant for a softmax (square loss), else ``"probabilities"``."""
    raw_logits: bool
    """True when the loss needs raw logits; False when log-probabilities give the same loss."""
    title: str
    formula: str
    """Per-item formula in Markdown with LaTeX, for documentation and model cards."""
    references: tuple[str, ...] = ()
    """Keys of :data:`hf_squareloss.citations.BIBTEX`."""

    @property
    def label_smoothing(self) -> bool:
        return "label_smoothing" in self.hyperparameters


LOSSES: dict[str, LossSpec] = {
    spec.loss_type: spec
    for spec in (
        LossSpec(
            loss_type="ce",
            function=L.cross_entropy,
            hyperparameters=("label_smoothing",),
            outputs="probabilities",
            raw_logits=False,
            title="softmax cross-entropy",
            formula=r"$\ell(f, y) = -\log \mathrm{softmax}(f)_y$",
        ),
        LossSpec(
            loss_type="square",
            function=L.square_loss,
            hyperparameters=("k", "M"),
            outputs="scores",
            raw_logits=True,
            title="rescaled square loss (Hui & Belkin, 2021)",
            formula=r"$\ell(f, y) = \frac{1}{C}\left(k\,(f_y - M)^2 + \sum_{i \neq y} f_i^2\right)$ on raw logits $f$ (no softmax)",
            references=("hui2021evaluation",),
        ),
        LossSpec(
            loss_type="tce",
            function=L.tamed_cross_entropy,
            hyperparameters=("alpha",),
            outputs="probabilities",
            raw_logits=False,
            title="Tamed Cross Entropy (Martinez & Stiefelhagen, 2018)",
            formula=(
                r"$\ell(f, y) = \frac{(1 - \log q_y)^{1-\alpha} - 1}{1 - \alpha}$ with $q = \mathrm{softmax}(f)$ "
                r"($\log(1 - \log q_y)$ at $\alpha = 1$; cross-entropy at $\alpha = 0$)"
            ),
            references=("martinez2018taming",),
        ),
        LossSpec(
            loss_type="softmax_mse",
            function=L.softmax_mse,
            hyperparameters=(),
            outputs="probabilities",
            raw_logits=False,
            title="squared error of the softmax (baseline of the TCE paper)",
            formula=r"$\ell(f, y) = \sum_i (q_i - [i = y])^2$ with $q = \mathrm{softmax}(f)$",
            references=("martinez2018taming",),
        ),
        LossSpec(
            loss_type="softmax_mae",
            function=L.softmax_mae,
            hyperparameters=(),
            outputs="probabilities",
            raw_logits=False,
            title="absolute error of the softmax (baseline of the TCE paper)",
            formula=r"$\ell(f, y) = \sum_i |q_i - [i = y]| = 2(1 - q_y)$ with $q = \mathrm{softmax}(f)$",
            references=("martinez2018taming",),
        ),
    )
}

DEFAULT_TCE_ALPHA = 1.5


def loss_types() -> list[str]:
    """The registered ``loss_type`` names."""
    return list(LOSSES)


def get_loss_spec(loss_type: str) -> LossSpec:
    """The :class:`LossSpec` of ``loss_type``; ``ValueError`` listing the choices when unknown."""
    try:
        return LOSSES[loss_type]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss_type {loss_type!r}; choose one of {loss_types()}") from None


@dataclass(frozen=True)
class LossConfig:
    """A loss type with its resolved hyper-parameters: callable, serialisable, comparable.

    Build it with :meth:`resolve`; call it like the functional losses
    (``loss_config(logits, labels, reduction="sum")``).
    """

    loss_type: str
    params: Mapping[str, float] = field(default_factory=dict)
    source: str = "user"
    """Where the hyper-parameters came from (``"user"``, a preset, ``"default"``)."""

    @classmethod
    def resolve(
        cls,
        loss_type: str,
        *,
        num_classes: int | None = None,
        k: float | None = None,
        M: float | None = None,
        preset: str | None = None,
        alpha: float | None = None,
        label_smoothing: float = 0.0,
    ) -> LossConfig:
        """Validate and fill in the hyper-parameters of ``loss_type``.

        Arguments that ``loss_type`` does not use are validated and otherwise ignored, except a non-zero
        ``label_smoothing``, which is an error for a loss that cannot honour it. The square loss takes ``(k, M)`` from ``k``/``M``, else from
        ``preset``, else from ``num_classes`` (see :func:`hf_squareloss.square_loss_preset`).
        """
        spec = get_loss_spec(loss_type)
        # every given value must be valid, also those this loss type does not use (a typo is never silent)
        for name, value in (("k", k), ("M", M)):
            if value is not None:
                L.check_positive(name, value)
        if alpha is not None:
            L.check_alpha(alpha)
        if preset is not None:
            square_loss_preset(preset)
        label_smoothing = L.check_label_smoothing(label_smoothing)
        if label_smoothing and not spec.label_smoothing:
            raise ValueError(
                f"label smoothing ({label_smoothing}) cannot be honoured by loss_type {loss_type!r}; set it to 0 "
                f"or use a loss that supports it: {[t for t, s in LOSSES.items() if s.label_smoothing]}"
            )
        params: dict[str, float] = {}
        source = "user"
        if "k" in spec.hyperparameters:
            resolved = square_loss_preset(preset, num_classes=num_classes, k=k, M=M)
            params = {"k": resolved.k, "M": resolved.M}
            source = resolved.source
        if "alpha" in spec.hyperparameters:
            params["alpha"] = L.check_alpha(DEFAULT_TCE_ALPHA if alpha is None else alpha)
            source = "user" if alpha is not None else "default"
        if "label_smoothing" in spec.hyperparameters:
            params["label_smoothing"] = label_smoothing
        return cls(loss_type=loss_type, params=params, source=source)

    @property
    def spec(self) -> LossSpec:
        return get_loss_spec(self.loss_type)

    def __call__(
        self, logits: Tensor, labels: Tensor, *, ignore_index: int = -100, reduction: str = "mean"
    ) -> Tensor:
        return self.spec.function(
            logits, labels, ignore_index=ignore_index, reduction=reduction, **self.params
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form: ``{"loss_type": ..., <params>..., "source": ...}``."""
        return {
            "loss_type": self.loss_type,
            **{k: float(v) for k, v in self.params.items()},
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LossConfig:
        spec = get_loss_spec(data.get("loss_type"))
        missing = [p for p in spec.hyperparameters if p not in data]
        if missing:
            raise ValueError(f"loss record for {spec.loss_type!r} lacks {missing}: {dict(data)}")
        return cls.resolve(
            spec.loss_type,
            k=data.get("k"),
            M=data.get("M"),
            alpha=data.get("alpha"),
            label_smoothing=data.get("label_smoothing", 0.0),
        ).with_source(data.get("source", "user"))

    def with_source(self, source: str) -> LossConfig:
        return LossConfig(self.loss_type, dict(self.params), source)

    def same_loss(self, other: LossConfig) -> bool:
        """Same loss type and hyper-parameters (the provenance ``source`` is not compared)."""
        return self.loss_type == other.loss_type and dict(self.params) == dict(other.params)

    def describe(self) -> str:
        """Short human-readable form, e.g. ``square (k=1, M=15)``."""
        if not self.params:
            return self.loss_type
        inner = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{self.loss_type} ({inner})"
