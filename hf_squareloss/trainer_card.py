"""The model card of a model trained by a ``Trainer`` with an hf-squareloss loss.

:meth:`SquareLossTrainer.create_model_card <hf_squareloss.SquareLossTrainer.create_model_card>` renders it, and so
does ``trainer.push_to_hub()``, which calls that method. A stock :class:`transformers.Trainer` given
``compute_loss_func=make_compute_loss_func(...)`` gets the same card after one call,
:func:`attach_model_card`. The card says which loss trained the model, with its parameters, formula and paper, how
to read the model's outputs, the training arguments and, when a dataset is named, the last evaluation as a
``model-index``. This module reads the Trainer's attributes; it imports neither ``transformers`` nor the Trainer.

A PEFT model (LoRA...) gets the card of its adapter: ``library_name: peft``, the adapter's base model named (in the
metadata when it is a Hub id, in the text when it is a local folder), PEFT's tags, and how to load it.
"""

from __future__ import annotations

import os
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .heads import is_peft_model, unwrap
from .model_card import (
    CARD_FILE,
    HYPERPARAMETERS,
    ModelCardInfo,
    card_metrics,
    eval_history,
    render_model_card,
    save_card,
)
from .registry import LossConfig
from .scores import read_record

__all__ = [
    "TAG_NAMES",
    "attach_model_card",
    "card_info_from_trainer",
    "create_model_card",
    "trainer_loss_record",
]

TAG_NAMES = ("hf-squareloss",)
"""Tags of every card a Trainer writes; the loss type is added to them."""

# model class name ending -> pipeline tag
_PIPELINE_TAGS = {
    "ForSequenceClassification": "text-classification",
    "ForTokenClassification": "token-classification",
    "ForImageClassification": "image-classification",
    "ForAudioClassification": "audio-classification",
    "ForMultipleChoice": "multiple-choice",
    "ForCausalLM": "text-generation",
    "ForMaskedLM": "fill-mask",
    "ForCTC": "automatic-speech-recognition",
}


def _unwrapped(trainer: Any) -> Any:
    model = getattr(trainer, "model", None)
    accelerator = getattr(trainer, "accelerator", None)
    return accelerator.unwrap_model(model) if accelerator is not None and model is not None else model


def trainer_loss_record(trainer: Any) -> dict[str, Any]:
    """The loss record of the model ``trainer`` trains: its loss function's resolved settings and number of classes,
    with what the model config adds for that same loss (the calibration temperature)."""
    model = _unwrapped(trainer)
    stored = read_record(model) if model is not None else None
    loss_function = getattr(trainer, "compute_loss_func", None)
    config = getattr(loss_function, "config", None)
    # a record in the model config alone would tell of an earlier training, not of this one
    if not isinstance(config, LossConfig) or not callable(getattr(loss_function, "record", None)):
        raise ValueError(
            f"{type(trainer).__name__} does not train with an hf-squareloss loss: use SquareLossTrainer, or pass "
            "compute_loss_func=hf_squareloss.make_compute_loss_func(...) to the Trainer"
        )
    record: dict[str, Any] = dict(loss_function.record())
    if isinstance(stored, Mapping) and LossConfig.from_dict(stored).same_loss(config):
        record = {**stored, **record}  # keeps the temperature of a calibrated model
    return record


def _first(value: str | Sequence[str] | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return next(iter(value), None)


def _last_evaluation(trainer: Any) -> dict[str, Any]:
    state = getattr(trainer, "state", None)
    for entry in reversed(getattr(state, "log_history", None) or []):
        if any(k.startswith("eval_") for k in entry):
            return dict(entry)
    return {}


def _versions(peft: bool = False) -> dict[str, str]:
    import importlib

    from . import __version__

    versions = {"hf_squareloss": __version__}
    for name in ("transformers", "torch", "datasets", "accelerate", *(("peft",) if peft else ())):
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            continue
    return versions


def card_info_from_trainer(
    trainer: Any,
    *,
    model_name: str | None = None,
    dataset_name: str | Sequence[str] | None = None,
    dataset_config: str | None = None,
    dataset_split: str = "validation",
    tags: str | Sequence[str] | None = None,
    language: str | None = None,
    license: str | None = None,
    finetuned_from: str | None = None,
    tasks: str | Sequence[str] | None = None,
    dataset_tags: str | Sequence[str] | None = None,
    dataset: str | Sequence[str] | None = None,
    dataset_args: str | Sequence[str] | None = None,
    label_noise: Any = None,
) -> ModelCardInfo:
    """What the card of ``trainer``'s model says (see :func:`create_model_card` for the arguments)."""
    wrapper = _unwrapped(trainer)
    adapter = _adapter_info(wrapper) if is_peft_model(wrapper) else None
    model = unwrap(wrapper) if wrapper is not None else None
    config = getattr(model, "config", None)
    args = trainer.args
    record = trainer_loss_record(trainer)
    loss_type = LossConfig.from_dict(record).loss_type

    name_or_path = str(getattr(config, "_name_or_path", "") or "")
    if adapter is not None:
        name_or_path = adapter["base_model"] or name_or_path
    base = finetuned_from or (name_or_path if name_or_path and not os.path.isdir(name_or_path) else None)
    hub_id = getattr(trainer, "hub_model_id", None) or getattr(args, "hub_model_id", None)
    name = model_name or (hub_id.split("/")[-1] if hub_id else Path(args.output_dir).absolute().name)

    dataset_id = _first(dataset_tags) or _first(dataset_name) or _first(dataset)
    shown = _first(dataset) or _first(dataset_name) or dataset_id
    data_config = dataset_config or _first(dataset_args)

    task_type = _first(tasks) or next(
        (tag for end, tag in _PIPELINE_TAGS.items() if type(model).__name__.endswith(end)), None
    )
    evaluation = _last_evaluation(trainer)
    metrics = card_metrics(evaluation, dataset_split, loss_type)
    noise = label_noise.to_dict(with_indices=False) if hasattr(label_noise, "to_dict") else label_noise
    id2label = getattr(config, "id2label", None) or {}
    labels = [str(id2label[i]) for i in sorted(id2label)]
    if all(label == f"LABEL_{i}" for i, label in enumerate(labels)):
        labels = []
    hyper = {k: getattr(args, k) for k in HYPERPARAMETERS if getattr(args, k, None) not in (None, "", [])}
    hyper = {k: v.value if hasattr(v, "value") else v for k, v in hyper.items()}  # enums as their names
    world = getattr(args, "world_size", 1) or 1
    if world > 1:
        hyper["world_size"] = world
    if evaluation.get("epoch") is not None:
        hyper["epoch of the last evaluation"] = evaluation["epoch"]
    model_tags = list(getattr(model, "model_tags", None) or [])
    extra = [*TAG_NAMES, *([tags] if isinstance(tags, str) else tags or []), *model_tags]
    if adapter is not None:
        extra += adapter["tags"] + ([f"base_model:adapter:{base}"] if base else [])
    if task_type:
        extra.append(task_type)
    sizes = [
        f"{len(data):,} {what} examples"
        for what, data in (("training", trainer.train_dataset), ("evaluation", trainer.eval_dataset))
        if data is not None and hasattr(data, "__len__") and not isinstance(data, Mapping)
    ]
    sections = []
    if adapter is not None:
        sections.append(("Adapter", _adapter_text(adapter, name_or_path, base, task_type)))
    if metrics and not dataset_id:
        sections.append(
            (
                "Model index",
                "These results are not in the card's `model-index`: name the dataset "
                "(`create_model_card(dataset_name=...)`, or `push_to_hub(dataset_name=...)`) to put them there.",
            )
        )
    return ModelCardInfo(
        model_name=name,
        model_id=hub_id if hub_id and "/" in hub_id else None,
        loss=record,
        base_model=base,
        dataset_id=dataset_id,
        dataset_name=shown,
        dataset_config=data_config,
        dataset_note=f"The Trainer saw {' and '.join(sizes)}." if sizes else None,
        task_type=task_type,
        metrics=metrics,
        model_index=bool(dataset_id),
        label_noise=noise,
        hyperparameters=hyper,
        history=eval_history(getattr(getattr(trainer, "state", None), "log_history", None) or []),
        label_names=labels,
        extra_tags=list(dict.fromkeys(extra)),
        language=language,
        license=license,
        versions=_versions(peft=adapter is not None),
        sections=sections,
        library_name="peft" if adapter is not None else "transformers",
        base_model_note=(
            f"It is a {adapter['peft_type']} adapter: the base model, a local folder (`{name_or_path}`), is not "
            "part of this repository."
            if adapter is not None and not base
            else None
        ),
    )


# PEFT task type -> the AutoPeftModel class that loads it
_PEFT_CLASSES = {
    "SEQ_CLS": "AutoPeftModelForSequenceClassification",
    "TOKEN_CLS": "AutoPeftModelForTokenClassification",
    "CAUSAL_LM": "AutoPeftModelForCausalLM",
    "SEQ_2_SEQ_LM": "AutoPeftModelForSeq2SeqLM",
    "QUESTION_ANS": "AutoPeftModelForQuestionAnswering",
    "FEATURE_EXTRACTION": "AutoPeftModelForFeatureExtraction",
}


def _adapter_info(model: Any) -> dict[str, Any]:
    """The active adapter's type, task type, base model and PEFT's own tags."""
    configs = getattr(model, "peft_config", {}) or {}
    name = getattr(model, "active_adapter", None)
    config = configs.get(name) if isinstance(name, str) else next(iter(configs.values()), None)
    peft_type = getattr(getattr(config, "peft_type", None), "value", getattr(config, "peft_type", None))
    task = getattr(getattr(config, "task_type", None), "value", getattr(config, "task_type", None))
    shown = {"LORA": "LoRA", "ADALORA": "AdaLoRA", "LOHA": "LoHa", "LOKR": "LoKr", "IA3": "IA3"}
    return {
        "peft_type": shown.get(str(peft_type), str(peft_type or "PEFT")),
        "task_type": task,
        "base_model": getattr(config, "base_model_name_or_path", None),
        "tags": [str(peft_type).lower()] if peft_type else [],
    }


def _adapter_text(adapter: Mapping[str, Any], base_path: str, base: str | None, task_type: str | None) -> str:
    cls = _PEFT_CLASSES.get(str(adapter["task_type"]), "AutoPeftModel")
    where = f"[{base}](https://huggingface.co/{base})" if base else f"in the local folder `{base_path}`"
    return (
        f"This repository holds a {adapter['peft_type']} adapter (PEFT, task type "
        f"`{adapter['task_type']}`) for the base model {where}, not a full model. Its `adapter_config.json` "
        "carries the loss record (`auto_mapping.hf_squareloss`), so the loaded adapter reads as it was trained:\n\n"
        "```python\nimport hf_squareloss\n"
        f"from peft import {cls}\n\n"
        f'model = {cls}.from_pretrained("<this repository>")\n'
        "hf_squareloss.loss_config_of(model)  # the loss it was trained with\n"
        "hf_squareloss.logits_to_scores(model(**inputs).logits, model)  # what to read from its outputs\n```"
    )


def create_model_card(
    trainer: Any,
    model_name: str | None = None,
    dataset_name: str | Sequence[str] | None = None,
    tags: str | Sequence[str] | None = None,
    *,
    dataset_config: str | None = None,
    dataset_split: str = "validation",
    label_noise: Any = None,
    language: str | None = None,
    license: str | None = None,
    finetuned_from: str | None = None,
    tasks: str | Sequence[str] | None = None,
    dataset_tags: str | Sequence[str] | None = None,
    dataset: str | Sequence[str] | None = None,
    dataset_args: str | Sequence[str] | None = None,
    folder: str | os.PathLike | None = None,
) -> Path | None:
    """Write the model card of ``trainer``'s model to ``<output_dir>/README.md``; return its path.

    Runs on the main process only (returns ``None`` elsewhere). The card is checked to parse strictly with
    ``huggingface_hub`` before it is written.

    Args:
        model_name: the card's title and ``model-index`` name (default: the Hub repository's name, else the name of
            ``output_dir``).
        dataset_name: the Hub id of the training dataset (e.g. ``"nyu-mll/glue"``). With it, the last evaluation
            of the Trainer goes into the ``model-index``.
        tags: more tags; ``hf-squareloss`` and the loss type are always there.
        dataset_config: the dataset's configuration (e.g. ``"mrpc"``).
        dataset_split: the split the last evaluation ran on (default ``"validation"``).
        label_noise: the label noise put on the training labels, as returned by
            :func:`hf_squareloss.noise.add_label_noise` (or its ``to_dict()``).
        language, license, finetuned_from, tasks, dataset_tags, dataset, dataset_args: as in
            :meth:`transformers.Trainer.create_model_card` (``trainer.push_to_hub(**kwargs)`` passes them on).
    """
    if hasattr(trainer, "is_world_process_zero") and not trainer.is_world_process_zero():
        return None
    info = card_info_from_trainer(
        trainer,
        model_name=model_name,
        dataset_name=dataset_name,
        dataset_config=dataset_config,
        dataset_split=dataset_split,
        tags=tags,
        language=language,
        license=license,
        finetuned_from=finetuned_from,
        tasks=tasks,
        dataset_tags=dataset_tags,
        dataset=dataset,
        dataset_args=dataset_args,
        label_noise=label_noise,
    )
    return save_card(folder or trainer.args.output_dir, render_model_card(info), name=CARD_FILE)


def attach_model_card(trainer: Any) -> Any:
    """Give a stock ``transformers.Trainer`` that trains with ``make_compute_loss_func(...)`` the card of
    :class:`~hf_squareloss.SquareLossTrainer`: afterwards ``trainer.create_model_card(...)`` and
    ``trainer.push_to_hub(...)`` write it. Returns ``trainer``.

    >>> trainer = attach_model_card(Trainer(model, args, compute_loss_func=make_compute_loss_func("square")))  # doctest: +SKIP
    >>> trainer.train(); trainer.push_to_hub(dataset_name="nyu-mll/glue")  # doctest: +SKIP
    """
    trainer_loss_record(trainer)  # refuse a Trainer without our loss now, not at push time
    trainer.create_model_card = types.MethodType(create_model_card, trainer)
    return trainer
