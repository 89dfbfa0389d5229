"""Reading a trained model's outputs: what each loss's logits mean, and the probabilities a model serves.

A model trained with the square loss outputs **scores**: the training target of the true class is ``M`` and of
every other class 0. A softmax of those scores is not a probability of anything, so pipelines must be told not to
apply one: ``pipeline("text-classification", model=..., function_to_apply="none")``.

Once a **temperature** ``T`` has been fitted (:func:`hf_squareloss.calibration.fit_temperature`) and stored in the
loss record (``config.hf_squareloss["temperature"]``), every model serves probabilities: ``softmax(logits / T)``
for the cross-entropy family, ``softmax((logits / M) / T)`` for the square loss. :func:`logits_to_scores` and
:func:`pipeline_scores` return them, and :func:`served_nll` their negative log-likelihood, the one scale on which
models trained with different losses compare.

**Where the record lives.** In ``model.config.hf_squareloss`` (saved in ``config.json``). A PEFT adapter (LoRA...)
saves no ``config.json``: its record lives in the adapter's own config, ``peft_config[adapter].auto_mapping``
under the same key, which PEFT writes to ``adapter_config.json`` and loads back (it reads that mapping only for
adapters without a task type, and then only its own keys). :func:`store_record` writes both places, and every
reader here (:func:`loss_config_of`, :func:`temperature_of`, :func:`logits_to_scores`...) finds the adapter's record
first on a model that carries one: ``AutoPeftModelForSequenceClassification.from_pretrained(folder)`` gives a model
these functions read as it was trained.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .registry import LossConfig, get_loss_spec

__all__ = [
    "TEMPERATURE_KEY",
    "logits_to_scores",
    "loss_config_of",
    "pipeline_kwargs",
    "pipeline_scores",
    "read_record",
    "served_log_probs",
    "served_nll",
    "set_temperature",
    "store_record",
    "temperature_of",
]

CONFIG_KEY = "hf_squareloss"
TEMPERATURE_KEY = "temperature"
"""Key of the fitted temperature in the loss record (a float; absent when the model was not calibrated)."""


def _adapter_configs(model: Any) -> list[Any]:
    """The PEFT configs of ``model``'s active adapters (a ``PeftModel``, or a transformers model with an adapter
    loaded: ``peft_config`` is then a dict of adapter name -> config); ``[]`` for any other object."""
    configs = getattr(model, "peft_config", None)
    if not isinstance(configs, Mapping) or not configs:
        return []
    active = getattr(model, "active_adapter", None)
    if callable(active):  # transformers' PeftAdapterMixin: a method, deprecated for active_adapters()
        active = None
    if active is None and callable(getattr(model, "active_adapters", None)):
        try:
            active = model.active_adapters()
        except Exception:  # no adapter active yet
            active = None
    names = [active] if isinstance(active, str) else list(active or [])
    return [configs[name] for name in names if name in configs] or list(configs.values())[:1]


def _adapter_record(model: Any) -> Mapping[str, Any] | None:
    for config in _adapter_configs(model):
        mapping = getattr(config, "auto_mapping", None)
        if isinstance(mapping, Mapping) and isinstance(mapping.get(CONFIG_KEY), Mapping):
            return mapping[CONFIG_KEY]
    return None


def _record_of(source: Any) -> Mapping[str, Any] | None:
    """The loss record dict of a record, a model config or a model; ``None`` for names and ``LossConfig``."""
    if isinstance(source, (str, LossConfig)):
        return None
    if isinstance(source, Mapping):
        return source
    adapter = _adapter_record(source)
    if adapter is not None:  # an adapter's own loss wins over a record its base model may carry
        return adapter
    config = getattr(source, "config", source)
    return getattr(config, CONFIG_KEY, None)


def read_record(source: Any) -> dict[str, Any] | None:
    """A copy of the loss record of a model, a PEFT model or a config (``None`` when it carries none)."""
    record = _record_of(source)
    return dict(record) if isinstance(record, Mapping) else None


def store_record(model: Any, record: Mapping[str, Any] | None) -> None:
    """Write ``record`` as the loss record of ``model`` (``None`` removes it): into ``model.config`` and, for a
    model with PEFT adapters, into the active adapter's config, so that the adapter saves it."""
    inner = getattr(model, "module", model)
    config = getattr(inner, "config", None)
    if config is not None:
        if record is None:
            if hasattr(config, CONFIG_KEY):
                delattr(config, CONFIG_KEY)
        else:
            setattr(config, CONFIG_KEY, dict(record))
    for adapter in _adapter_configs(inner):
        mapping = dict(getattr(adapter, "auto_mapping", None) or {})
        if record is None:
            mapping.pop(CONFIG_KEY, None)
        else:
            mapping[CONFIG_KEY] = dict(record)
        adapter.auto_mapping = mapping or None


def loss_config_of(source: Any) -> LossConfig:
    """A :class:`LossConfig` from a loss type name, a ``LossConfig``, a loss record dict, a model config or a model."""
    if isinstance(source, LossConfig):
        return source
    if isinstance(source, str):
        return LossConfig.resolve(source)
    if isinstance(source, Mapping):
        return LossConfig.from_dict(source)
    record = _record_of(source)
    if record is None:
        raise ValueError(
            f"{type(source).__name__} carries no `{CONFIG_KEY}` record in its config: it was not trained with "
            "hf-squareloss, or its config was saved without it; pass the loss_type explicitly"
        )
    return LossConfig.from_dict(record)


def check_temperature(temperature: Any) -> float:
    """``temperature`` as a float; ``ValueError`` unless it is a finite number > 0."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return value


def temperature_of(source: Any) -> float | None:
    """The fitted temperature stored in the loss record of ``source`` (a record, a config or a model), or ``None``."""
    record = _record_of(source)
    if record is None or record.get(TEMPERATURE_KEY) is None:
        return None
    return check_temperature(record[TEMPERATURE_KEY])


def set_temperature(model: Any, temperature: float | None) -> None:
    """Store ``temperature`` in the loss record of ``model`` (``None`` removes it); saved with the model, or with
    its PEFT adapter.

    The model (or config) must already carry a loss record: calibration belongs to a model trained with a known loss.
    """
    record = _record_of(model)
    if not isinstance(record, Mapping):
        raise ValueError(
            f"{type(model).__name__} carries no `{CONFIG_KEY}` record in its config; train it with hf-squareloss "
            "(or set the record) before storing a temperature"
        )
    record = dict(record)
    if temperature is None:
        record.pop(TEMPERATURE_KEY, None)
    else:
        record[TEMPERATURE_KEY] = check_temperature(temperature)
    if hasattr(model, "config") or _adapter_configs(model):
        store_record(model, record)
    else:  # a bare config
        setattr(model, CONFIG_KEY, record)


def _wide(logits: Tensor) -> Tensor:
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def _unscaled(logits: Tensor, config: LossConfig) -> Tensor:
    """What the temperature divides: ``logits / M`` for a ``scores`` loss, the logits otherwise."""
    if config.spec.outputs == "scores":
        return logits / config.params.get("M", 1.0)
    return logits


def served_log_probs(logits: Tensor, loss: Any, *, temperature: float | None = None) -> Tensor:
    r"""Log-probabilities the model serves: ``log_softmax(z / T)``, classes last.

    ``z`` is ``logits / M`` for the square loss and the logits for every other loss; ``T`` is ``temperature``, else
    the one stored in the loss record of ``loss``, else 1 (uncalibrated: the plain softmax of the logits for the
    cross-entropy family; for the square loss :math:`\mathrm{softmax}(f / M)`, which is only a convention).
    """
    config = loss_config_of(loss)
    if temperature is None:
        temperature = temperature_of(loss)
    scale = 1.0 if temperature is None else check_temperature(temperature)
    return torch.log_softmax(_unscaled(_wide(logits), config) / scale, dim=-1)


def served_nll(
    logits: Tensor,
    labels: Tensor,
    loss: Any,
    *,
    temperature: float | None = None,
    ignore_index: int = -100,
) -> Tensor:
    r"""Negative log-likelihood of ``labels`` under the probabilities the model serves, per item.

    ``-log softmax(z / T)[y]`` with ``z`` and ``T`` as in :func:`served_log_probs`: for the cross-entropy family the
    cross-entropy of the logits, for the square loss that of ``softmax(logits / M)`` (or the fitted temperature).
    Logits ``(..., C)``, integer labels ``(...)``; the result has the labels' shape, 0 where a label is
    ``ignore_index``. Evaluation reports its mean as ``eval_nll``: unlike the training loss it means the same for
    every loss, so models trained with different losses compare on it.
    """
    config = loss_config_of(loss)
    if temperature is None:
        temperature = temperature_of(loss)
    scale = 1.0 if temperature is None else check_temperature(temperature)
    z = _unscaled(_wide(logits), config) / scale
    if z.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(z.shape)} and labels {tuple(labels.shape)} do not line up")
    flat = torch.nn.functional.cross_entropy(
        z.reshape(-1, z.shape[-1]), labels.reshape(-1), ignore_index=ignore_index, reduction="none"
    )
    return flat.reshape(labels.shape)


def logits_to_scores(logits: Tensor, loss: Any, *, temperature: float | None = None) -> Tensor:
    """The numbers a user should read from ``logits`` of a model trained with ``loss``.

    With a temperature (``temperature``, or the one stored in the loss record of ``loss``): class probabilities
    ``softmax(z / T)`` whose rows sum to 1, where ``z = logits / M`` for the square loss and ``z = logits`` otherwise.

    Without one:

    * square loss: ``logits / M``, so that 1 is the training target of the true class and 0 that of the others.
      These are scores, not probabilities: they need not sum to 1 and may leave ``[0, 1]``.
    * every other registered loss: ``softmax(logits)``, class probabilities.

    The predicted class is ``argmax`` of either. ``loss`` is anything :func:`loss_config_of` accepts.
    """
    config = loss_config_of(loss)
    logits = _wide(logits)
    if temperature is None:
        temperature = temperature_of(loss)
    if temperature is None and config.spec.outputs == "scores":
        return _unscaled(logits, config)
    return served_log_probs(logits, config, temperature=temperature).exp()


def pipeline_kwargs(loss: Any) -> dict[str, str]:
    """Keyword arguments for a ``transformers`` classification pipeline call on a model trained with ``loss``.

    ``{"function_to_apply": "none"}`` for the square loss (raw scores), ``{}`` (softmax) otherwise. A pipeline
    cannot apply a temperature: for the probabilities of a calibrated model use :func:`pipeline_scores`.
    """
    spec = get_loss_spec(loss) if isinstance(loss, str) else loss_config_of(loss).spec
    return {"function_to_apply": "none"} if spec.outputs == "scores" else {}


def pipeline_scores(
    pipe: Any, inputs: Any, **call_kwargs: Any
) -> list[dict[str, float]] | list[list[dict[str, float]]]:
    """Run a classification pipeline and return, for every class, what :func:`logits_to_scores` gives.

    The pipeline is called with ``function_to_apply="none"`` and ``top_k`` the number of classes (its raw logits for
    every class); the logits are put back in class order through ``pipe.model.config.label2id`` and mapped by
    :func:`logits_to_scores` with the model's loss record (so a calibrated model gives ``softmax(z / T)``). The
    result has the pipeline's shape: a list of ``{"label", "score"}`` sorted by decreasing score for one input,
    a list of such lists for several. Text and image classification pipelines are supported.

    >>> classify = pipeline("text-classification", model="out")          # doctest: +SKIP
    >>> hf_squareloss.pipeline_scores(classify, ["a fine film", "dull"])  # doctest: +SKIP
    """
    for key in ("function_to_apply", "top_k"):
        if key in call_kwargs:
            raise ValueError(f"pipeline_scores sets {key} itself (raw logits of every class); do not pass it")
    model = pipe.model
    loss_config_of(model)  # a model without a loss record is refused before any work
    label2id = {str(k): int(v) for k, v in model.config.label2id.items()}
    # top_k: every class (the image pipeline reads top_k=None as its default, 5)
    outputs = pipe(inputs, function_to_apply="none", top_k=len(label2id), **call_kwargs)
    single = bool(outputs) and isinstance(outputs[0], Mapping)
    batches = [outputs] if single else outputs
    if not batches or not all(isinstance(b, list) and b and isinstance(b[0], Mapping) for b in batches):
        raise ValueError(f"pipeline_scores: unexpected pipeline output {outputs!r:.200}")
    num_classes = len(label2id)
    id2label = {v: k for k, v in label2id.items()}
    results = []
    for entries in batches:
        logits = torch.full((num_classes,), float("nan"), dtype=torch.float64)
        for entry in entries:
            if entry["label"] not in label2id:
                raise ValueError(
                    f"pipeline label {entry['label']!r} is not in the model's label2id {label2id}"
                )
            logits[label2id[entry["label"]]] = float(entry["score"])
        if bool(torch.isnan(logits).any()):
            raise ValueError(
                f"the pipeline returned {len(entries)} of the model's {num_classes} classes; every class is needed"
            )
        scores = logits_to_scores(logits[None], model)[0].tolist()
        ranked = sorted(range(num_classes), key=lambda i: -scores[i])
        results.append([{"label": id2label[i], "score": scores[i]} for i in ranked])
    return results[0] if single else results
