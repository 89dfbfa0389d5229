"""The one registry of loss types: ``loss_type`` -> loss function, parameter schema and documentation.

Everything else in the package asks this module which losses exist and how to build them: the fields of
:class:`hf_squareloss.SquareLossTrainingArguments` (``--<loss_type>_<param>``, with their help), the Trainer's
``compute_loss_func``, the SpeechBrain ``logits_loss``, the ``--losses`` choices of ``demo`` and ``compare``, the
model cards (formula, citation) and the loss record saved with a model.

Adding a loss is one module with its functional form (see :mod:`hf_squareloss.losses`) and one :class:`LossSpec`
here, or, from outside the package, :func:`register_loss`. A spec also says what the loss is on the heads where it
is not a per-item formula on the logits: its CTC form (:class:`CtcForm`: CTC for ``ce``, Tamed CTC for ``tce``;
a loss without one is refused on CTC heads) and its form computed from the hidden states and the output layer
(``linear``, :mod:`hf_squareloss.linear`; used by ``loss_from_hidden_states``). A loss registered before
``hf_squareloss.training_args`` (or the Trainer) is first imported gets its ``TrainingArguments`` fields; one
registered later gets them in a class built by :func:`hf_squareloss.training_args.training_arguments_class`.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from . import functional as L
from . import linear as linear_forms
from .citations import BIBTEX
from .losses import focal_loss, generalized_cross_entropy, nce_rce, squentropy, symmetric_cross_entropy
from .losses.focal import DEFAULT_FOCAL_GAMMA
from .losses.gce import DEFAULT_GCE_Q
from .losses.nce_rce import DEFAULT_NCE_RCE_ALPHA, DEFAULT_NCE_RCE_BETA
from .losses.sce import DEFAULT_RCE_A, DEFAULT_SCE_ALPHA, DEFAULT_SCE_BETA, check_weights
from .presets import SQUARE_LOSS_PRESETS, preset_names, preset_rule, square_loss_preset

__all__ = [
    "FORMS",
    "LOSSES",
    "SEARCH",
    "CtcForm",
    "LossConfig",
    "LossParam",
    "LossSpec",
    "get_loss_spec",
    "hidden_state_function",
    "loss_fields",
    "loss_types",
    "register_loss",
    "select_losses",
]

DEFAULT_TCE_ALPHA = L.DEFAULT_TCE_ALPHA

USER = "user"
DEFAULT = "default"
SEARCH = "search"
"""Source of a value set by a hyper-parameter search trial (``Trainer.hyperparameter_search``)."""

FORMS = ("logits", "ctc", "hidden_states")
"""How a loss was computed for a head, as its record says (``form``): the per-item formula on the logits; the loss's
CTC form over each utterance (:class:`CtcForm`); the per-item formula computed from the hidden states and the output
layer, without the logits (same value and gradients as on the logits)."""


@dataclass(frozen=True)
class LossParam:
    """One parameter of a loss: its keyword, default, validation and help text."""

    name: str
    """Keyword argument of the loss function (or, for a ``setting``, of :meth:`LossConfig.resolve`)."""
    help: str
    default: Any = None
    """Value used when the parameter is not given; ``None`` when the spec's ``defaults`` hook decides it."""
    check: Callable[[str, Any], Any] = L.check_positive
    """``check(name, value)`` returns the validated value or raises ``ValueError`` naming the problem."""
    type: type = float
    choices: tuple[str, ...] | None = None
    setting: bool = False
    """True for a setting that steers the resolution (a preset) without being an argument of the function."""
    neutral: Any = None
    """A value that leaves the loss unchanged (no label smoothing: 0). A loss without this parameter accepts the
    neutral value and refuses any other, instead of ignoring it."""
    field: str | None = None
    """Name of the ``TrainingArguments`` field; default ``<loss_type>_<name>`` in lower case."""
    search: tuple[float, float, bool] | None = None
    """Range of a hyper-parameter search over it, ``(low, high, log_scale)`` (:mod:`hf_squareloss.search`); ``None``:
    not searched by default."""

    def field_name(self, loss_type: str) -> str:
        return self.field or f"{loss_type}_{self.name.lower()}"


@dataclass(frozen=True)
class CtcForm:
    """What a loss is on a CTC head (``*ForCTC``), where there is no per-frame target class: a transform of each
    utterance's CTC negative log-likelihood ``nll`` (``-log`` of the summed probability of every alignment of the
    label sequence to the frames), divided by the number of target tokens when the model's ``ctc_loss_reduction``
    is ``"mean"``, as the model's own loss is."""

    name: str
    """What the loss is called there (``"CTC"``, ``"Tamed CTC"``)."""
    formula: str
    """Per-utterance formula in Markdown with LaTeX, for documentation and model cards."""
    transform: Callable[..., Tensor]
    """``transform(nll, **params)``: the per-utterance loss from ``nll`` and the loss's resolved parameters."""


def _ctc_nll(nll: Tensor, **params: Any) -> Tensor:
    return nll


def _tamed_ctc(nll: Tensor, *, alpha: float, **params: Any) -> Tensor:
    return L.tame(nll, float(alpha))


_CTC_NLL = r"$\mathrm{nll} = -\log \sum_{a \in \mathcal{B}^{-1}(y)} \prod_t q_{t, a_t}$"

DefaultsHook = Callable[..., tuple[dict[str, Any], dict[str, str], str]]
"""``(given, num_classes) -> (values, per-parameter sources, overall source)`` for parameters whose default depends
on the other parameters or the number of classes (the square loss's presets)."""


@dataclass(frozen=True)
class LossSpec:
    """Everything the package knows about one loss type."""

    loss_type: str
    function: Callable[..., Tensor]
    outputs: str
    """``"scores"`` when the trained logits are not meant for a softmax (square loss), else ``"probabilities"``."""
    raw_logits: bool
    """True when the loss needs raw logits; False when log-probabilities give the same loss."""
    title: str
    formula: str
    """Per-item formula in Markdown with LaTeX, for documentation and model cards."""
    references: tuple[str, ...] = ()
    """Keys of :data:`hf_squareloss.citations.BIBTEX`."""
    params: tuple[LossParam, ...] = ()
    defaults: DefaultsHook | None = None
    validate: Callable[[Mapping[str, Any]], None] | None = None
    """Checks that involve several parameters (``ValueError``), run on the resolved values."""
    ctc: CtcForm | None = None
    """The loss's form on CTC heads; ``None``: it does not apply to them (refused)."""
    linear: Callable[..., Tensor] | None = None
    """Its form computed from hidden states and the output layer's weight (:mod:`hf_squareloss.linear`); ``None``:
    it trains through the logits only."""

    @property
    def hyperparameters(self) -> tuple[str, ...]:
        """Keyword arguments of ``function`` that carry the loss's own hyper-parameters."""
        return tuple(p.name for p in self.params if not p.setting)

    @property
    def label_smoothing(self) -> bool:
        return "label_smoothing" in self.hyperparameters

    def param(self, name: str) -> LossParam | None:
        return next((p for p in self.params if p.name == name), None)

    def fields(self) -> dict[str, LossParam]:
        """``TrainingArguments`` field name -> parameter."""
        return {p.field_name(self.loss_type): p for p in self.params}


# --------------------------------------------------------------------------------------------------------------
# parameter checks and the square loss's preset rule
# --------------------------------------------------------------------------------------------------------------
def _check_alpha(name: str, value: Any) -> float:
    return L.check_alpha(value)


def _check_label_smoothing(name: str, value: Any) -> float:
    return L.check_label_smoothing(value)


def _check_preset(name: str, value: Any) -> str:
    square_loss_preset(value)
    return str(value).lower()


def _square_defaults(
    given: Mapping[str, Any], num_classes: int | None
) -> tuple[dict[str, Any], dict[str, str], str]:
    preset = given.get("preset")
    resolved = square_loss_preset(preset, num_classes=num_classes, k=given.get("k"), M=given.get("M"))
    base = square_loss_preset(preset, num_classes=num_classes).source
    values = {"k": resolved.k, "M": resolved.M}
    sources = {name: USER if given.get(name) is not None else base for name in values}
    return values, sources, resolved.source


def _check_weights(params: Mapping[str, Any]) -> None:
    check_weights(params["alpha"], params["beta"])


_RCE_A_HELP = (
    f"the reverse cross-entropy's stand-in for log 0, < 0; default log(1e-4) = {DEFAULT_RCE_A:.4g} as in the authors' public "
    "code (the paper's text says -4)"
)

LOSSES: dict[str, LossSpec] = {
    spec.loss_type: spec
    for spec in (
        LossSpec(
            loss_type="ce",
            function=L.cross_entropy,
            params=(
                LossParam(
                    "label_smoothing",
                    "label smoothing in [0, 1)",
                    default=0.0,
                    check=_check_label_smoothing,
                    neutral=0.0,
                    field="label_smoothing_factor",
                    search=(0.0, 0.3, False),
                ),
            ),
            outputs="probabilities",
            raw_logits=False,
            title="softmax cross-entropy",
            formula=r"$\ell(f, y) = -\log \mathrm{softmax}(f)_y$",
            ctc=CtcForm(
                name="CTC",
                formula=r"$\ell(x, y) = \mathrm{nll}$, "
                + _CTC_NLL
                + r" over the alignments $a$ of $y$ to the frames, $q_t = \mathrm{softmax}(f_t)$",
                transform=_ctc_nll,
            ),
            linear=linear_forms.linear_cross_entropy,
        ),
        LossSpec(
            loss_type="square",
            function=L.square_loss,
            params=(
                LossParam(
                    "k",
                    "weight k > 0 of the true-class term; default: from --square_preset, else from the number "
                    f"of classes: {preset_rule()}",
                    search=(1.0, 30.0, True),
                ),
                LossParam(
                    "M",
                    "target M > 0 of the true-class logit; default: from --square_preset, else from the number "
                    f"of classes: {preset_rule()}",
                    search=(1.0, 30.0, True),
                ),
                LossParam(
                    "preset",
                    f"take (k, M) from Hui & Belkin's setting for a data set: {preset_names()}; "
                    "--square_k / --square_m override it",
                    check=_check_preset,
                    type=str,
                    choices=tuple(SQUARE_LOSS_PRESETS),
                    setting=True,
                ),
            ),
            defaults=_square_defaults,
            outputs="scores",
            raw_logits=True,
            title="rescaled square loss (Hui & Belkin, 2021)",
            formula=r"$\ell(f, y) = \frac{1}{C}\left(k\,(f_y - M)^2 + \sum_{i \neq y} f_i^2\right)$ on raw logits $f$ (no softmax)",
            references=("hui2021evaluation",),
            linear=linear_forms.linear_square_loss,
        ),
        LossSpec(
            loss_type="tce",
            function=L.tamed_cross_entropy,
            params=(
                LossParam(
                    "alpha",
                    "taming strength >= 0 (0 is cross-entropy, 1 is log(1 - log q)); "
                    f"{DEFAULT_TCE_ALPHA:g} is the TCE paper's best trade-off",
                    default=DEFAULT_TCE_ALPHA,
                    check=_check_alpha,
                    search=(0.0, 3.0, False),
                ),
            ),
            outputs="probabilities",
            raw_logits=False,
            title="Tamed Cross Entropy (Martinez & Stiefelhagen, 2018)",
            formula=(
                r"$\ell(f, y) = \frac{(1 - \log q_y)^{1-\alpha} - 1}{1 - \alpha}$ with $q = \mathrm{softmax}(f)$ "
                r"($\log(1 - \log q_y)$ at $\alpha = 1$; cross-entropy at $\alpha = 0$)"
            ),
            references=("martinez2018taming",),
            ctc=CtcForm(
                name="Tamed CTC",
                formula=r"$\ell(x, y) = \frac{(1 + \mathrm{nll})^{1-\alpha} - 1}{1 - \alpha}$, "
                + _CTC_NLL
                + r" (the TCE transform of the utterance's CTC negative log-likelihood; CTC at $\alpha = 0$)",
                transform=_tamed_ctc,
            ),
            linear=linear_forms.linear_tamed_cross_entropy,
        ),
        LossSpec(
            loss_type="softmax_mse",
            function=L.softmax_mse,
            outputs="probabilities",
            raw_logits=False,
            title="squared error of the softmax (baseline of the TCE paper)",
            formula=r"$\ell(f, y) = \sum_i (q_i - [i = y])^2$ with $q = \mathrm{softmax}(f)$",
            references=("martinez2018taming",),
        ),
        LossSpec(
            loss_type="softmax_mae",
            function=L.softmax_mae,
            outputs="probabilities",
            raw_logits=False,
            title="absolute error of the softmax (baseline of the TCE paper)",
            formula=r"$\ell(f, y) = \sum_i |q_i - [i = y]| = 2(1 - q_y)$ with $q = \mathrm{softmax}(f)$",
            references=("martinez2018taming",),
        ),
        LossSpec(
            loss_type="squentropy",
            function=squentropy,
            outputs="probabilities",
            raw_logits=True,
            title="squentropy (Hui, Belkin & Wright, 2023)",
            formula=(
                r"$\ell(f, y) = -\log q_y + \frac{1}{C-1}\sum_{i \neq y} f_i^2$ with $q = \mathrm{softmax}(f)$, "
                r"the square term on raw logits $f$"
            ),
            references=("hui2023cut",),
        ),
        LossSpec(
            loss_type="gce",
            function=generalized_cross_entropy,
            params=(
                LossParam(
                    "q",
                    f"exponent in (0, 1] (-> cross-entropy as q -> 0); {DEFAULT_GCE_Q:g} is the paper's setting",
                    default=DEFAULT_GCE_Q,
                    check=L.check_unit_interval,
                    search=(0.1, 1.0, False),
                ),
            ),
            outputs="probabilities",
            raw_logits=False,
            title="generalized cross-entropy (Zhang & Sabuncu, 2018)",
            formula=r"$\ell(f, y) = \frac{1 - q_y^{\,q}}{q}$ with $q_y = \mathrm{softmax}(f)_y$",
            references=("zhang2018generalized",),
        ),
        LossSpec(
            loss_type="sce",
            function=symmetric_cross_entropy,
            params=(
                LossParam(
                    "alpha",
                    "weight >= 0 of the cross-entropy",
                    default=DEFAULT_SCE_ALPHA,
                    check=L.check_nonnegative,
                    search=(0.01, 10.0, True),
                ),
                LossParam(
                    "beta",
                    "weight >= 0 of the reverse cross-entropy",
                    default=DEFAULT_SCE_BETA,
                    check=L.check_nonnegative,
                    search=(0.01, 10.0, True),
                ),
                LossParam("A", _RCE_A_HELP, default=DEFAULT_RCE_A, check=L.check_negative),
            ),
            validate=_check_weights,
            outputs="probabilities",
            raw_logits=False,
            title="symmetric cross-entropy (Wang et al., 2019)",
            formula=(
                r"$\ell(f, y) = -\alpha \log q_y - \beta A\,(1 - q_y)$ with $q = \mathrm{softmax}(f)$ "
                r"(cross-entropy plus reverse cross-entropy; $A = \log 10^{-4}$ by default)"
            ),
            references=("wang2019symmetric",),
        ),
        LossSpec(
            loss_type="nce_rce",
            function=nce_rce,
            params=(
                LossParam(
                    "alpha",
                    "weight >= 0 of the normalized cross-entropy",
                    default=DEFAULT_NCE_RCE_ALPHA,
                    check=L.check_nonnegative,
                    search=(0.1, 10.0, True),
                ),
                LossParam(
                    "beta",
                    "weight >= 0 of the reverse cross-entropy",
                    default=DEFAULT_NCE_RCE_BETA,
                    check=L.check_nonnegative,
                    search=(0.1, 10.0, True),
                ),
                LossParam("A", _RCE_A_HELP, default=DEFAULT_RCE_A, check=L.check_negative),
            ),
            validate=_check_weights,
            outputs="probabilities",
            raw_logits=False,
            title="normalized cross-entropy + reverse cross-entropy (Ma et al., 2020)",
            formula=(
                r"$\ell(f, y) = \alpha \frac{\log q_y}{\sum_j \log q_j} - \beta A\,(1 - q_y)$ with "
                r"$q = \mathrm{softmax}(f)$ ($A = \log 10^{-4}$ by default)"
            ),
            references=("ma2020normalized",),
        ),
        LossSpec(
            loss_type="focal",
            function=focal_loss,
            params=(
                LossParam(
                    "gamma",
                    f"focusing exponent >= 0 (0 is cross-entropy); {DEFAULT_FOCAL_GAMMA:g} is the paper's setting",
                    default=DEFAULT_FOCAL_GAMMA,
                    check=L.check_nonnegative,
                    search=(0.0, 5.0, False),
                ),
            ),
            outputs="probabilities",
            raw_logits=False,
            title="focal loss (Lin et al., 2017)",
            formula=r"$\ell(f, y) = -(1 - q_y)^\gamma \log q_y$ with $q = \mathrm{softmax}(f)$",
            references=("lin2017focal",),
        ),
    )
}


def loss_types() -> list[str]:
    """The registered ``loss_type`` names."""
    return list(LOSSES)


ALL = "all"
"""The word that selects every registered loss in ``--losses`` (demo, compare)."""


def select_losses(names: Sequence[str]) -> list[str]:
    """``names`` with ``"all"`` replaced by every registered loss type, without repeats; unknown names raise."""
    out: list[str] = []
    for name in names:
        for loss_type in loss_types() if name == ALL else [get_loss_spec(name).loss_type]:
            if loss_type not in out:
                out.append(loss_type)
    return out


def get_loss_spec(loss_type: str) -> LossSpec:
    """The :class:`LossSpec` of ``loss_type``; ``ValueError`` listing the choices when unknown."""
    try:
        return LOSSES[loss_type]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss_type {loss_type!r}; choose one of {loss_types()}") from None


def loss_fields() -> dict[str, tuple[str, LossParam]]:
    """Every ``TrainingArguments`` field of a loss parameter: field name -> ``(loss_type, parameter)``."""
    return {name: (spec.loss_type, p) for spec in LOSSES.values() for name, p in spec.fields().items()}


def _owners(name: str) -> list[LossParam]:
    return [p for spec in LOSSES.values() if (p := spec.param(name)) is not None]


def register_loss(
    spec: LossSpec, *, bibtex: Mapping[str, str] | None = None, replace: bool = False
) -> LossSpec:
    """Add ``spec`` to the registry (and its BibTeX entries to :data:`hf_squareloss.citations.BIBTEX`).

    Checked: the name (lower case, digits and ``_``, as it names ``--<loss_type>_<param>`` fields), that the
    function takes every parameter, ``ignore_index`` and ``reduction`` as keywords, that no field name clashes
    with another loss's, that ``outputs`` is known and that every reference has BibTeX. ``ValueError`` otherwise.
    """
    name = spec.loss_type
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"loss_type must be lower case letters, digits and '_', got {name!r}")
    if name in LOSSES and not replace:
        raise ValueError(f"loss_type {name!r} is already registered (pass replace=True to replace it)")
    if spec.outputs not in ("scores", "probabilities"):
        raise ValueError(f"{name}: outputs must be 'scores' or 'probabilities', got {spec.outputs!r}")
    signature = inspect.signature(spec.function).parameters
    keywords = {n for n, p in signature.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    missing = [n for n in (*spec.hyperparameters, "ignore_index", "reduction") if n not in keywords]
    if missing:
        raise ValueError(f"{name}: the loss function takes no keyword argument(s) {missing}")
    taken = {f: t for f, (t, _) in loss_fields().items() if t != name}
    clashes = [f for f in spec.fields() if f in taken]
    if clashes:
        raise ValueError(f"{name}: field name(s) {clashes} are already used by {[taken[f] for f in clashes]}")
    entries = dict(bibtex or {})
    unknown = [k for k in spec.references if k not in BIBTEX and k not in entries]
    if unknown:
        raise ValueError(f"{name}: no BibTeX for reference(s) {unknown}; pass them as bibtex={{key: entry}}")
    if spec.ctc is not None and not callable(spec.ctc.transform):
        raise ValueError(f"{name}: ctc.transform must be callable as transform(nll, **params)")
    for param in spec.params:
        if param.search is not None:
            low, high, log = param.search
            if not low < high or (log and low <= 0):
                raise ValueError(
                    f"{name}.{param.name}: bad search range {param.search} (low < high, low > 0 on a log scale)"
                )
    BIBTEX.update(entries)
    LOSSES[name] = spec
    return spec


def hidden_state_function(loss_type: str) -> Callable[..., Tensor]:
    """The form of ``loss_type`` computed from hidden states and the output layer's weight (``LossSpec.linear``);
    ``ValueError`` for a loss that has none."""
    spec = get_loss_spec(loss_type)
    if spec.linear is None:
        having = [t for t, s in LOSSES.items() if s.linear is not None]
        raise ValueError(
            f"loss_type {loss_type!r} has no form computed from the hidden states; use one of {having} or the "
            "logits path"
        )
    return spec.linear


def _overall_source(sources: Mapping[str, str]) -> str:
    """One word for the sources of all parameters: the only one, or the non-default ones with ``rest default``."""
    kinds = list(dict.fromkeys(sources.values()))
    if not kinds or kinds == [DEFAULT]:
        return DEFAULT
    if len(kinds) == 1:
        return kinds[0]
    given = [k for k in (SEARCH, USER) if k in kinds]
    derived = [k for k in kinds if k not in (SEARCH, USER, DEFAULT)]  # from a preset, a setting
    rest = [f"rest from {', '.join(derived)}"] if derived else []
    rest += [f"rest {DEFAULT}"] if DEFAULT in kinds else []
    return ", ".join([*given, *rest]) if given else ", ".join([*derived, *rest[len(derived) > 0 :]])


@dataclass(frozen=True)
class LossConfig:
    """A loss type with its resolved hyper-parameters: callable, serialisable, comparable.

    Build it with :meth:`resolve`; call it like the functional losses
    (``loss_config(logits, labels, reduction="sum")``).
    """

    loss_type: str
    params: Mapping[str, float] = field(default_factory=dict)
    source: str = USER
    """Where the hyper-parameters came from, overall (``"user"``, a preset, ``"default"``, or a mix)."""
    sources: Mapping[str, str] = field(default_factory=dict)
    """Where each hyper-parameter came from: ``"user"`` (given), ``"default"`` (the registry's) or a preset."""

    @classmethod
    def resolve(
        cls,
        loss_type: str,
        *,
        num_classes: int | None = None,
        origin: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> LossConfig:
        """Validate and fill in the hyper-parameters of ``loss_type``.

        ``settings`` are parameters by their keyword in the loss's schema (``k``, ``M``, ``preset`` for ``square``,
        ``alpha`` for ``tce``, ``q`` for ``gce``...); ``None`` means not given. A parameter not given takes the
        registry's default and is recorded as such; a given one is recorded as ``"user"``, or as what ``origin``
        says for it (``{"alpha": "search"}``: set by a hyper-parameter search trial). A value derived from a given
        setting (the square loss's ``(k, M)`` from ``preset``) is recorded with that setting's origin too. A given parameter that ``loss_type`` does not have is
        validated as another loss's parameter of that name and otherwise ignored, except a non-neutral
        ``label_smoothing``, which is an error for a loss that cannot honour it; a name no loss has is an error.
        The square loss takes ``(k, M)`` from ``k``/``M``, else from ``preset``, else from ``num_classes`` (see
        :func:`hf_squareloss.square_loss_preset`).
        """
        spec = get_loss_spec(loss_type)
        given: dict[str, Any] = {}
        for name, value in settings.items():
            if value is None:
                continue
            param = spec.param(name)
            if param is not None:
                value = param.check(name, value)
                if param.neutral is not None and value == param.neutral:
                    continue  # the neutral value is the default: not recorded as the user's
                given[name] = value
                continue
            owners = _owners(name)
            if not owners:
                known = sorted({p.name for s in LOSSES.values() for p in s.params})
                raise ValueError(
                    f"unknown loss parameter {name!r} for loss_type {loss_type!r}; its parameters are "
                    f"{[p.name for p in spec.params]} (all losses' parameters: {known})"
                )
            value = owners[0].check(name, value)  # a typo or a bad value is never silent
            neutral = owners[0].neutral
            if neutral is not None and value != neutral:
                users = [t for t, s in LOSSES.items() if s.param(name) is not None]
                raise ValueError(
                    f"{name.replace('_', ' ')} ({value}) cannot be honoured by loss_type {loss_type!r}; set it to "
                    f"{neutral} or use a loss that supports it: {users}"
                )
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        overall = None
        if spec.defaults is not None:
            values, sources, overall = spec.defaults(given, num_classes)
        for param in spec.params:
            if param.setting or param.name in values:
                continue
            if param.name in given:
                values[param.name], sources[param.name] = given[param.name], USER
            else:
                values[param.name], sources[param.name] = param.default, DEFAULT
        if spec.validate is not None:
            spec.validate(values)
        overall = overall if overall is not None else _overall_source(sources)
        origins = {name: where for name, where in (origin or {}).items() if name in given and where != USER}
        if origins:
            sources = _with_origins(spec, sources, origins)
            overall = _overall_source(sources)
        return cls(loss_type=loss_type, params=values, source=overall, sources=sources)

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
        """Plain JSON-able form: ``{"loss_type": ..., <params>..., "source": ..., "sources": {<param>: ...}}``."""
        return {
            "loss_type": self.loss_type,
            **{k: float(v) for k, v in self.params.items()},
            "source": self.source,
            "sources": dict(self.sources),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LossConfig:
        """The config of a loss record; records written before per-parameter sources existed are read too (each
        parameter then has the record's overall ``source``). Other keys (``num_classes``...) are ignored."""
        spec = get_loss_spec(data.get("loss_type"))
        missing = [p for p in spec.hyperparameters if p not in data]
        if missing:
            raise ValueError(f"loss record for {spec.loss_type!r} lacks {missing}: {dict(data)}")
        resolved = cls.resolve(spec.loss_type, **{p: data[p] for p in spec.hyperparameters})
        source = data.get("source", USER)
        recorded = data.get("sources") or {}
        if not isinstance(recorded, Mapping):
            raise ValueError(f"loss record: 'sources' must be a mapping, got {recorded!r}")
        sources = {p: str(recorded.get(p, source)) for p in spec.hyperparameters}
        return cls(spec.loss_type, dict(resolved.params), source, sources)

    def with_source(self, source: str) -> LossConfig:
        """The same loss with every parameter's source set to ``source``."""
        return LossConfig(self.loss_type, dict(self.params), source, dict.fromkeys(self.params, source))

    def same_loss(self, other: LossConfig) -> bool:
        """Same loss type and hyper-parameters (the provenance is not compared)."""
        return self.loss_type == other.loss_type and _same_values(self.params, other.params)

    def describe(self) -> str:
        """Short human-readable form, e.g. ``square (k=1, M=15)``."""
        if not self.params:
            return self.loss_type
        inner = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{self.loss_type} ({inner})"


def _with_origins(spec: LossSpec, sources: Mapping[str, str], origins: Mapping[str, str]) -> dict[str, str]:
    """``sources`` with each given parameter's ``"user"`` replaced by its origin, and the values derived from a given
    setting (a preset) prefixed with that setting's origin (``"search: preset timit (Hui & Belkin)"``)."""
    out = {}
    settings = [origins[p.name] for p in spec.params if p.setting and p.name in origins]
    for name, source in sources.items():
        if source == USER and name in origins:
            out[name] = origins[name]
        elif source not in (USER, DEFAULT) and settings:
            out[name] = f"{settings[0]}: {source}"
        else:
            out[name] = source
    return out


def _same_values(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    """Equal keys and values; values equal within float rounding (a JSON round trip keeps floats exact, but a
    value computed again, like ``log(1e-4)``, may differ in its last bit)."""
    return a.keys() == b.keys() and all(
        math.isclose(float(a[k]), float(b[k]), rel_tol=1e-12, abs_tol=0.0) for k in a
    )
