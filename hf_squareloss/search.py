"""Searching over the loss with ``Trainer.hyperparameter_search`` (optuna, Ray Tune), and its objective.

Every loss field of :class:`~hf_squareloss.SquareLossTrainingArguments` is searchable, ``loss_type`` included: a
trial's values reach ``trainer.args``, and :class:`~hf_squareloss.SquareLossTrainer` builds the trial's loss from
them when the trial starts (a value the loss refuses fails the trial with the field's name). Each trial starts from
the loss settings the arguments had before the search, so that a conditional space (``tce_alpha`` only when
``loss_type`` is ``tce``) never carries a value from one trial into the next. The model a trial trains records the
values it trained with, their source ``"search"`` (``config.hf_squareloss["sources"]``).

:func:`loss_search_space` builds a space from the registry's ranges (``LossParam.search``), for one backend:

>>> trainer.hyperparameter_search(                                    # doctest: +SKIP
...     hp_space=loss_search_space(["square"], backend="optuna"),      # square_k, square_m in [1, 30], log scale
...     backend="optuna", n_trials=20, direction="maximize")

:func:`default_objective` is what :meth:`SquareLossTrainer.hyperparameter_search` optimises when given no
``compute_objective``: transformers' default (the sum of the ``compute_metrics`` numbers), computed without the
numbers this package adds to every evaluation (``eval_nll``, ``eval_perplexity``); with no ``compute_metrics``,
``eval_nll`` instead of ``eval_loss``, because the training loss changes scale with the loss being searched
(``direction="minimize"`` then).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .registry import LOSSES, get_loss_spec, select_losses

__all__ = ["ADDED_METRICS", "default_objective", "loss_search_space"]

ADDED_METRICS = ("nll", "perplexity")
"""Evaluation numbers :class:`~hf_squareloss.SquareLossTrainer` adds (``eval_nll``...; :mod:`hf_squareloss.evaluation`)."""

_NOT_OBJECTIVES = ("epoch",)
_TIME_ENDINGS = ("_runtime", "_per_second", "_compilation_time", "_preparation_time")


def default_objective(metrics: Mapping[str, float]) -> float:
    """The objective of a search trial from its evaluation ``metrics``: the sum of the ``compute_metrics`` numbers
    (as transformers' default), or, without any, ``eval_nll`` (``eval_loss`` when that is absent)."""
    added = tuple(f"_{name}" for name in ADDED_METRICS)
    rest = {
        key: value
        for key, value in metrics.items()
        if key != "eval_loss" and key not in _NOT_OBJECTIVES and not key.endswith((*added, *_TIME_ENDINGS))
    }
    if rest:
        return float(sum(rest.values()))
    for key in ("eval_nll", "eval_loss"):
        if key in metrics:
            return float(metrics[key])
    raise ValueError(f"no objective in the evaluation metrics {sorted(metrics)}")


def _searched_params(loss_type: str) -> list[tuple[str, float, float, bool]]:
    spec = get_loss_spec(loss_type)
    return [
        (param.field_name(loss_type), *param.search)
        for param in spec.params
        if param.search is not None and param.field_name(loss_type) != "label_smoothing_factor"
    ]


def loss_search_space(
    losses: Sequence[str] | str = ("square", "tce"),
    *,
    backend: str = "optuna",
    ranges: Mapping[str, tuple[float, float, bool]] | None = None,
) -> Callable[[Any], dict[str, Any]]:
    """An ``hp_space`` for ``Trainer.hyperparameter_search`` over the loss: ``loss_type`` among ``losses`` (when
    more than one; ``"all"`` is every registered loss) and each chosen loss's parameters in the registry's ranges
    (``LossParam.search``: square ``k``, ``M`` in [1, 30] on a log scale, TCE ``alpha`` in [0, 3], GCE ``q`` in
    [0.1, 1], ...; ``ranges`` overrides a field's, ``{"tce_alpha": (0.5, 2.0, False)}``).

    ``backend="optuna"``: a define-by-run space, suggesting a loss's parameters only when it is the trial's loss.
    ``backend="ray"``: a dict of Ray Tune distributions (Ray has no conditional parameters, so every listed loss's
    parameters are drawn; those of the losses a trial does not train with are not used).
    """
    chosen = select_losses([losses] if isinstance(losses, str) else list(losses))
    overrides = dict(ranges or {})
    per_loss = {
        loss: [(f, *overrides.get(f, (lo, hi, log))) for f, lo, hi, log in _searched_params(loss)]
        for loss in chosen
    }
    unknown = sorted(set(overrides) - {f for params in per_loss.values() for f, *_ in params})
    if unknown:
        raise ValueError(f"ranges for {unknown}: not a searched parameter of {chosen}")
    for params in per_loss.values():
        for name, low, high, log in params:
            if not low < high or (log and low <= 0):
                raise ValueError(f"{name}: bad search range ({low}, {high}, log={log})")
    if backend == "optuna":
        return _optuna_space(chosen, per_loss)
    if backend == "ray":
        return _ray_space(chosen, per_loss)
    raise ValueError(f"backend must be 'optuna' or 'ray', got {backend!r}")


def _optuna_space(chosen: list[str], per_loss: dict[str, list]) -> Callable[[Any], dict[str, Any]]:
    def space(trial: Any) -> dict[str, Any]:
        loss = trial.suggest_categorical("loss_type", chosen) if len(chosen) > 1 else chosen[0]
        values: dict[str, Any] = {"loss_type": loss} if len(chosen) > 1 else {}
        for name, low, high, log in per_loss[loss]:
            values[name] = trial.suggest_float(name, low, high, log=log)
        return values

    return space


def _ray_space(chosen: list[str], per_loss: dict[str, list]) -> Callable[[Any], dict[str, Any]]:
    def space(trial: Any = None) -> dict[str, Any]:
        from ray import tune

        values: dict[str, Any] = {"loss_type": tune.choice(chosen)} if len(chosen) > 1 else {}
        for params in per_loss.values():
            for name, low, high, log in params:
                values[name] = tune.loguniform(low, high) if log else tune.uniform(low, high)
        return values

    return space


def trial_loss_fields(values: Mapping[str, Any], fields: Iterable[str]) -> list[str]:
    """The loss fields among the names a trial set."""
    known = set(fields)
    return [name for name in values if name in known]


def snapshot(args: Any, fields: Iterable[str]) -> dict[str, Any]:
    """The values of ``fields`` on ``args`` (copied), to restore before each trial."""
    return {name: copy.deepcopy(getattr(args, name, None)) for name in fields}


def restore(args: Any, values: Mapping[str, Any]) -> None:
    for name, value in values.items():
        setattr(args, name, copy.deepcopy(value))


def registered_ranges() -> dict[str, tuple[float, float, bool]]:
    """Every loss field with a search range in the registry: ``{field: (low, high, log)}``."""
    return {f: (lo, hi, log) for loss in LOSSES for f, lo, hi, log in _searched_params(loss)}
