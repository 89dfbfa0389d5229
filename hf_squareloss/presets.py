"""``(k, M)`` presets of the rescaled square loss.

Hui & Belkin (ICLR 2021) train with ``(k, M) = (1, 1)`` on their small label sets and rescale for large ones:

====================  ============================  ======  ======
preset                their datasets                k       M
====================  ============================  ======  ======
``small``             MNIST, CIFAR-10, GLUE, ...    1       1
``timit``, ``wsj``    TIMIT, WSJ (tens of classes)  1       15
``librispeech``,      LibriSpeech (1,000 subword    15      30
``imagenet``          units), ImageNet (1,000)
====================  ============================  ======  ======

Picking a preset from the number of classes alone is **our rule, not the paper's**: the paper gives the three
points above and no thresholds. We use ``C < 40 -> (1, 1)``, ``40 <= C < 500 -> (1, 15)`` and
``C >= 500 -> (15, 30)``. An explicit ``k`` or ``M`` always wins over the preset.
"""

from __future__ import annotations

from dataclasses import dataclass

from .functional import check_positive

__all__ = ["SQUARE_LOSS_PRESETS", "SquareLossParams", "preset_names", "preset_rule", "square_loss_preset"]


@dataclass(frozen=True)
class SquareLossParams:
    """The resolved ``(k, M)`` of a square loss and where they came from."""

    k: float
    M: float
    source: str


SQUARE_LOSS_PRESETS: dict[str, tuple[float, float]] = {
    "small": (1.0, 1.0),
    "timit": (1.0, 15.0),
    "wsj": (1.0, 15.0),
    "librispeech": (15.0, 30.0),
    "imagenet": (15.0, 30.0),
}

# our thresholds on the number of classes (see the module docstring)
_MEDIUM_FROM = 40
_LARGE_FROM = 500


def preset_rule() -> str:
    """Our number-of-classes rule in words, e.g. for help texts: ``(1, 1) below 40 classes, ...``."""
    small, medium, large = (SQUARE_LOSS_PRESETS[k] for k in ("small", "timit", "librispeech"))
    return (
        f"(k, M) = ({small[0]:g}, {small[1]:g}) below {_MEDIUM_FROM} classes, ({medium[0]:g}, {medium[1]:g}) "
        f"below {_LARGE_FROM}, ({large[0]:g}, {large[1]:g}) from {_LARGE_FROM}"
    )


def preset_names() -> str:
    """The named presets in words, e.g. for help texts: ``small (1, 1), timit (1, 15), ...``."""
    return ", ".join(f"{name} ({k:g}, {m:g})" for name, (k, m) in SQUARE_LOSS_PRESETS.items())


def _preset_for_num_classes(num_classes: int) -> str:
    if num_classes < _MEDIUM_FROM:
        return "small"
    if num_classes < _LARGE_FROM:
        return "timit"
    return "librispeech"


def square_loss_preset(
    preset: str | int | None = None,
    *,
    num_classes: int | None = None,
    k: float | None = None,
    M: float | None = None,
) -> SquareLossParams:
    """Resolve ``(k, M)`` from a preset name, a number of classes, and explicit overrides.

    ``preset`` is a name from :data:`SQUARE_LOSS_PRESETS` or a number of classes; ``num_classes`` is used when no
    preset is named. Explicit ``k`` / ``M`` override the preset's values. With nothing given, ``(1, 1)``.

    >>> square_loss_preset("librispeech")
    SquareLossParams(k=15.0, M=30.0, source='preset librispeech (Hui & Belkin)')
    >>> square_loss_preset(num_classes=42).M
    15.0
    """
    if isinstance(preset, bool):
        raise ValueError(f"preset must be a name or a number of classes, got {preset!r}")
    if isinstance(preset, int):
        num_classes, preset = preset, None
    if preset is not None:
        key = str(preset).lower()
        if key not in SQUARE_LOSS_PRESETS:
            raise ValueError(f"unknown square-loss preset {preset!r}; known: {sorted(SQUARE_LOSS_PRESETS)}")
        source = f"preset {key} (Hui & Belkin)"
    elif num_classes is not None:
        if int(num_classes) < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got num_classes={num_classes}")
        key = _preset_for_num_classes(int(num_classes))
        source = f"preset {key} for C={int(num_classes)} (thresholds are ours)"
    else:
        key, source = "small", "default"
    k0, m0 = SQUARE_LOSS_PRESETS[key]
    if k is not None or M is not None:
        source = "user" if (k is not None and M is not None) else f"user, rest from {source}"
    return SquareLossParams(
        k=check_positive("k", k) if k is not None else k0,
        M=check_positive("M", M) if M is not None else m0,
        source=source,
    )
