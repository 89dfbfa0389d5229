"""The model-card core: what a card says, its metadata, its text, its validation and its file.

Every card of the package is a :class:`ModelCardInfo` rendered by :func:`render_model_card`: the Trainer's card
(:mod:`hf_squareloss.trainer_card`) and the cards of the recipes' folders, built beside their data
(:mod:`hf_squareloss.glue.card`, :mod:`hf_squareloss.compare.card`, :mod:`hf_squareloss.speechbrain.card`), which
fill in more fields and add sections. This module knows the losses only through the registry (formula, title,
references), the BibTeX through :mod:`hf_squareloss.citations` and how to read outputs through
:func:`hf_squareloss.pipeline_kwargs`; it imports no recipe, no Trainer and no ``transformers``.

A card is Markdown with YAML metadata that ``huggingface_hub.ModelCard(text, ignore_metadata_errors=False)``
accepts: ``library_name``, ``base_model``, ``datasets``, ``tags``, ``pipeline_tag``, a ``model-index`` carrying
every evaluation metric with its task and dataset (name, config, split), and an ``hf_squareloss`` block: the loss
record of the model (``loss_type``, its parameters, their ``source``, ``num_classes``, the head kind and the
``form`` the loss took there, the calibration ``temperature`` when one was fitted) and the label-noise settings when
the training labels were corrupted. A loss recorded in its CTC form (``form: ctc``) is described as such: its
name there (CTC, Tamed CTC) and its per-utterance formula, not the per-class one.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .citations import bibtex
from .registry import LossConfig
from .scores import TEMPERATURE_KEY, pipeline_kwargs

__all__ = [
    "CARD_FILE",
    "HYPERPARAMETERS",
    "CardMetric",
    "ModelCardInfo",
    "card_metrics",
    "citation_section",
    "eval_history",
    "fmt",
    "front_matter",
    "loss_as_trained",
    "loss_block",
    "metadata",
    "render_model_card",
    "save_card",
    "validate_card",
]

CARD_FILE = "README.md"
PROJECT_URL = "https://github.com/hf-squareloss/hf-squareloss"

# the training arguments a reader needs to reproduce a run, in the order shown
HYPERPARAMETERS = (
    "learning_rate",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "max_steps",
    "optim",
    "lr_scheduler_type",
    "warmup_steps",
    "warmup_ratio",
    "weight_decay",
    "max_grad_norm",
    "label_smoothing_factor",
    "seed",
    "fp16",
    "bf16",
    "eval_strategy",
    "metric_for_best_model",
    "load_best_model_at_end",
)

# metric name (without eval_) -> (model-index type, name shown)
METRIC_NAMES = {
    "accuracy": ("accuracy", "Accuracy"),
    "f1": ("f1", "F1 (positive class)"),
    "matthews_correlation": ("matthews_correlation", "Matthews correlation"),
    "pearson": ("pearson", "Pearson correlation"),
    "spearmanr": ("spearmanr", "Spearman correlation"),
    "combined_score": ("combined_score", "Combined score"),
    "loss": ("loss", "Validation loss"),
    "nll": ("nll", "Negative log-likelihood of the served probabilities"),
    "perplexity": ("perplexity", "Perplexity of the served probabilities"),
}
# numbers the Trainer logs with every evaluation that are not metrics of the model
_NOT_METRICS = ("runtime", "samples_per_second", "steps_per_second", "samples", "epoch", "step")

# pipelines that take ``function_to_apply`` (what pipeline_kwargs returns)
CLASSIFICATION_PIPELINES = ("text-classification", "audio-classification", "image-classification")

_TASK_NAMES = {
    "text-classification": "Text Classification",
    "token-classification": "Token Classification",
    "image-classification": "Image Classification",
    "audio-classification": "Audio Classification",
    "multiple-choice": "Multiple Choice",
    "text-generation": "Text Generation",
    "fill-mask": "Fill Mask",
    "automatic-speech-recognition": "Automatic Speech Recognition",
}


@dataclass
class CardMetric:
    """One evaluation number for the ``model-index``."""

    key: str
    """As reported by the run, e.g. ``eval_accuracy``."""
    type: str
    name: str
    value: float
    split: str


@dataclass
class ModelCardInfo:
    """Everything a card says; :func:`render_model_card` turns it into text."""

    model_name: str
    loss: Mapping[str, Any]
    """The ``hf_squareloss`` loss record (``loss_type``, its parameters, ``source``, ``num_classes``, optionally
    ``temperature``), as stored in ``model.config.hf_squareloss``."""
    model_id: str | None = None
    """Hub id of this model (for the code example); ``<this model>`` when unknown."""
    base_model: str | None = None
    base_model_note: str | None = None
    dataset_id: str | None = None
    dataset_name: str | None = None
    dataset_config: str | None = None
    dataset_note: str | None = None
    task_type: str | None = "text-classification"
    """The pipeline tag; ``None`` when the head has none."""
    metrics: list[CardMetric] = field(default_factory=list)
    model_index: bool = True
    """Put ``metrics`` into the ``model-index`` (it needs the dataset they were measured on)."""
    label_noise: Mapping[str, Any] | None = None
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    protocol: Mapping[str, Any] | None = None
    history: Sequence[Mapping[str, Any]] = ()
    label_names: Sequence[str] = ()
    extra_tags: Sequence[str] = ()
    language: str | None = "en"
    license: str | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    notes: Sequence[str] = ()
    library_name: str = "transformers"
    how_to_read: str | None = None
    """Replaces the classification reading instructions (e.g. for a speech recogniser)."""
    extra_references: Sequence[str] = ()
    """BibTeX keys cited besides the loss's own (e.g. TCE for a Tamed CTC branch)."""
    sections: Sequence[tuple[str, str]] = ()
    """Further ``(heading, Markdown)`` sections, placed after the results."""

    @property
    def task_name(self) -> str:
        return _TASK_NAMES.get(self.task_type or "", "Classification")


def fmt(value: Any) -> str:
    """A number as a card shows it: integers without a decimal point, others with 4 significant digits."""
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.4g}"
    return str(value)


def card_metrics(
    metrics: Mapping[str, Any], split: str, loss_type: str, *, mismatched_split: str | None = None
) -> list[CardMetric]:
    """The model-index entries of a Trainer's evaluation numbers (``eval_accuracy``, ...).

    Known GLUE metrics get their usual names; any other ``eval_`` number is kept under its own name. The Trainer's
    timing and counting numbers are left out. Keys ending in ``_mm`` (MNLI mismatched) go to ``mismatched_split``.
    """
    out = []
    for key, value in metrics.items():
        if not key.startswith("eval_") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name, where = key[len("eval_") :], split
        if mismatched_split and name.endswith("_mm"):
            name, where = name[: -len("_mm")], mismatched_split
        if name in _NOT_METRICS or not math.isfinite(float(value)):
            continue
        mtype, shown = METRIC_NAMES.get(name, (name, name.replace("_", " ")))
        if name == "loss":
            shown = f"{shown} ({loss_type})"
        out.append(CardMetric(key=key, type=mtype, name=shown, value=float(value), split=where))
    return out


def eval_history(log_history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per evaluation during training: ``epoch``, ``step``, the ``eval_*`` numbers and, when logged at
    the same epoch, the training loss ``train_loss``."""
    train_loss: dict[float, float] = {}
    for entry in log_history:
        if "loss" in entry and "epoch" in entry:
            train_loss[round(float(entry["epoch"]), 6)] = float(entry["loss"])
    out = []
    for entry in log_history:
        if "epoch" not in entry or not any(k.startswith("eval_") for k in entry):
            continue
        item = {"epoch": float(entry["epoch"]), "step": int(entry.get("step", 0))}
        item.update(
            {
                k: v
                for k, v in entry.items()
                if k.startswith("eval_") and not k.endswith(("_runtime", "_per_second"))
            }
        )
        loss = train_loss.get(round(item["epoch"], 6))
        if loss is not None:
            item["train_loss"] = loss
        out.append(item)
    return out


def loss_block(loss: Mapping[str, Any], label_noise: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``hf_squareloss`` metadata block: the loss record, with the label noise when known."""
    config = LossConfig.from_dict(loss)
    block: dict[str, Any] = dict(config.to_dict())
    if "source" in loss:  # as recorded (it may say where each parameter came from)
        block["source"] = loss["source"]
    if loss.get("num_classes") is not None:
        block["num_classes"] = int(loss["num_classes"])
    for key in ("head", "form"):
        if loss.get(key):
            block[key] = str(loss[key])
    if loss.get(TEMPERATURE_KEY) is not None:
        block[TEMPERATURE_KEY] = float(loss[TEMPERATURE_KEY])
    if label_noise:
        block["label_noise"] = {
            "type": label_noise.get("noise_type"),
            "rate": label_noise.get("rate"),
            "exact": label_noise.get("exact"),
            "seed": label_noise.get("seed"),
            "realised_rate": label_noise.get("realised_rate"),
            "num_flipped": label_noise.get("num_flipped"),
        }
    if loss.get("hf_squareloss_version"):
        block["version"] = loss["hf_squareloss_version"]
    return block


def loss_as_trained(loss: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(title, formula, formula lead-in)`` of the loss as the record says it was trained: the loss's CTC form for
    ``form: ctc`` (its name there, its per-utterance formula), else the per-item formula on the logits."""
    config = LossConfig.from_dict(loss)
    form = loss.get("form")
    if form == "ctc":
        ctc = config.spec.ctc
        if ctc is None:
            raise ValueError(
                f"the record says form 'ctc', but loss_type {config.loss_type!r} has no CTC form"
            )
        return (
            f"{ctc.name} (the CTC form of the {config.spec.title})" if ctc.name != "CTC" else "CTC loss",
            ctc.formula,
            "Per utterance $x$ with label sequence $y$ (divided by the length of $y$ when the model's "
            "`ctc_loss_reduction` is `mean`), with $q_t$ the softmax of frame $t$'s logits",
        )
    lead = "Per example, with logits $f$ and label $y$ over $C$ classes"
    if form == "hidden_states":
        lead += (
            " (computed from the last hidden states and the output layer's weight, without making the logits: "
            "the same value and gradients)"
        )
    return config.spec.title, config.spec.formula, lead


def _tags(info: ModelCardInfo, config: LossConfig) -> list[str]:
    tags = ["hf-squareloss", config.loss_type]
    if info.label_noise:
        tags.append("label-noise")
    return list(dict.fromkeys([*tags, *info.extra_tags]))


def metadata(info: ModelCardInfo) -> dict[str, Any]:
    """The card's YAML metadata as a dict (validated by ``huggingface_hub``'s ``ModelCardData``)."""
    from huggingface_hub import EvalResult, ModelCardData

    config = LossConfig.from_dict(info.loss)
    results = [
        EvalResult(
            task_type=info.task_type or "classification",
            task_name=info.task_name,
            dataset_type=info.dataset_id or info.dataset_name or "custom",
            dataset_name=info.dataset_name or info.dataset_id or "custom",
            dataset_config=info.dataset_config,
            dataset_split=m.split,
            metric_type=m.type,
            metric_value=float(m.value),
            metric_name=m.name,
        )
        for m in (info.metrics if info.model_index else ())
    ]
    data = ModelCardData(
        base_model=info.base_model,
        datasets=[info.dataset_id] if info.dataset_id else None,
        language=info.language,
        license=info.license,
        library_name=info.library_name,
        pipeline_tag=info.task_type,
        tags=_tags(info, config),
        metrics=sorted({m.type for m in info.metrics if m.type not in ("loss", "nll")} if results else ())
        or None,
        model_name=info.model_name,
        eval_results=results or None,
        hf_squareloss=loss_block(info.loss, info.label_noise),
        ignore_metadata_errors=False,
    )
    return data.to_dict()


def _how_to_read(info: ModelCardInfo, config: LossConfig) -> str:
    if info.loss.get("form") == "ctc":
        return (
            "This is a CTC model: its logits are per-frame scores over the vocabulary, blank included, whose "
            "softmax gives the frame probabilities that CTC sums over alignments. Decode with argmax (greedy) or "
            'a CTC beam search, e.g. `pipeline("automatic-speech-recognition", model=...)`.'
        )
    kwargs = pipeline_kwargs(info.loss)  # the record: what the model says about itself, calibration included
    model = info.model_id or "<this model>"
    call = "".join(f", {k}={json.dumps(v)}" for k, v in kwargs.items())
    code = (
        "```python\nfrom transformers import pipeline\n\n"
        f'classify = pipeline("{info.task_type}", model="{model}"{call}, top_k=None)\n```'
    )
    if info.task_type not in CLASSIFICATION_PIPELINES:  # no classification pipeline reads this head
        code = "Read its logits with `hf_squareloss.logits_to_scores(logits, model)`."
    if config.spec.outputs == "scores":
        m = config.params.get("M", 1.0)
        text = (
            f"This model was trained with the {config.spec.title} on raw logits: its outputs are **scores**, not "
            f"log-probabilities. The true class was trained towards {fmt(m)} and every other class towards 0; "
            "predict with argmax, and do not read a softmax of the scores as probabilities:"
        )
    else:
        text = (
            f"This model was trained with the {config.spec.title} on softmax probabilities: a softmax of its "
            "logits gives class probabilities, which is what the default pipeline returns:"
        )
    lines = [text, code]
    lines.append(
        "`hf_squareloss.pipeline_kwargs(model)` gives these pipeline arguments for any model trained with "
        "hf-squareloss, and `hf_squareloss.logits_to_scores(logits, model)` the numbers to read from its logits."
    )
    note = calibrated_note(info.loss)
    if note is not None:
        lines.append(note)
    return "\n\n".join(lines)


def calibrated_note(loss: Mapping[str, Any]) -> str | None:
    """The card's paragraph on the fitted temperature of the loss record ``loss`` (``None``: not calibrated)."""
    if loss.get(TEMPERATURE_KEY) is None:
        return None
    return (
        f"**Calibrated**: a temperature T = {float(loss[TEMPERATURE_KEY]):.4g} was fitted after training "
        f'and is stored in the model config (`config.hf_squareloss["{TEMPERATURE_KEY}"]`). A pipeline cannot '
        "apply it: `hf_squareloss.pipeline_scores(classify, inputs)` and "
        "`hf_squareloss.logits_to_scores(logits, model)` return the calibrated class probabilities."
    )


def _results_table(metrics: Sequence[CardMetric]) -> str:
    lines = ["| split | metric | value |", "| --- | --- | --- |"]
    lines += [f"| {m.split} | {m.name} (`{m.key}`) | {m.value:.4f} |" for m in metrics]
    return "\n".join(lines)


def _history_table(history: Sequence[Mapping[str, Any]]) -> str:
    if not history:
        return ""
    keys = list(
        dict.fromkeys(
            k for h in history for k in h if k.startswith("eval_") and k[len("eval_") :] not in _NOT_METRICS
        )
    )
    lines = [
        "| epoch | step | train loss | " + " | ".join(keys) + " |",
        "|" + " --- |" * (3 + len(keys)),
    ]
    for h in history:
        cells = [fmt(h.get("epoch")), fmt(h.get("step")), fmt(h.get("train_loss", "-"))]
        cells += [f"{h[k]:.4f}" if isinstance(h.get(k), (int, float)) else "-" for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _noise_text(noise: Mapping[str, Any]) -> str:
    realised = noise.get("realised_rate")
    done = (
        f" {noise.get('num_flipped')} of {noise.get('num_examples')} labels changed, a realised rate of "
        f"{float(realised):.4f}."
        if realised is not None and noise.get("num_examples") is not None
        else ""
    )
    return (
        f"**Label noise**: the training labels were corrupted on purpose ({noise.get('noise_type')} noise, rate "
        f"{fmt(noise.get('rate'))}{', exact count' if noise.get('exact') else ''}, noise seed "
        f"{noise.get('seed')}).{done} Evaluation labels are clean."
    )


def render_model_card(info: ModelCardInfo) -> str:
    """The full card text (YAML front matter + Markdown body).

    The body follows one template: title, summary, training loss (formula and parameters), how to read the
    outputs, training data, training procedure, results, the builder's own sections, framework versions, citation.
    """
    config = LossConfig.from_dict(info.loss)
    title, formula, lead = loss_as_trained(info.loss)
    parts = [front_matter(metadata(info)), f"# {info.model_name}\n"]

    task = info.task_name.lower()
    intro = f"{'An' if task[:1] in 'aeiou' else 'A'} {task} model"
    if info.base_model:
        intro += f" fine-tuned from [{info.base_model}](https://huggingface.co/{info.base_model})"
    if info.dataset_name or info.dataset_id:
        intro += f" on {info.dataset_name or info.dataset_id}"
    parts.append(f"{intro}, trained with the **{title}** through [hf-squareloss]({PROJECT_URL}).\n")
    if info.base_model_note:
        parts.append(info.base_model_note + "\n")

    params = ", ".join(f"{k} = {fmt(v)}" for k, v in config.params.items()) or "none"
    source = info.loss.get("sources") or info.loss.get("source", "user")  # per parameter when recorded
    source_text = (
        ", ".join(f"{k}: {v}" for k, v in source.items()) if isinstance(source, Mapping) else str(source)
    )
    classes = info.loss.get("num_classes")
    parts.append("## Training loss\n")
    parts.append(
        f"`loss_type = {config.loss_type}`, parameters: {params} (source: {source_text})"
        + (f", {classes} classes" if classes else "")
        + ".\n"
    )
    parts.append(f"{lead}: {formula}.\n")

    parts.append("## How to read the outputs\n")
    parts.append((info.how_to_read or _how_to_read(info, config)) + "\n")
    if info.label_names:
        parts.append("Labels: " + ", ".join(f"{i} = `{n}`" for i, n in enumerate(info.label_names)) + ".\n")

    parts.append("## Training data\n")
    data_line = f"Dataset: {info.dataset_name or info.dataset_id or 'not named'}"
    if info.dataset_id:
        config_text = f", config `{info.dataset_config}`" if info.dataset_config else ""
        data_line += f" (`{info.dataset_id}`{config_text})"
    parts.append(data_line + ".\n")
    if info.dataset_note:
        parts.append(info.dataset_note + "\n")
    if info.label_noise:
        parts.append(_noise_text(info.label_noise) + "\n")

    parts.append("## Training procedure\n")
    if info.protocol:
        proto = ", ".join(
            f"{k} = {fmt(v)}"
            for k, v in info.protocol.items()
            if v is not None and not isinstance(v, (dict, list))
        )
        parts.append(f"Protocol: {proto}.\n")
    if info.hyperparameters:
        rows = ["| hyper-parameter | value |", "| --- | --- |"]
        rows += [f"| {k} | {fmt(v)} |" for k, v in info.hyperparameters.items()]
        parts.append("\n".join(rows) + "\n")

    parts.append("## Results\n")
    parts.append(
        (_results_table(info.metrics) if info.metrics else "No evaluation was recorded for this model.")
        + "\n"
    )
    history = _history_table(info.history)
    if history:
        parts.append("Validation during training:\n\n" + history + "\n")
    parts += [note + "\n" for note in info.notes]
    for heading, body in info.sections:
        parts.append(f"## {heading}\n")
        parts.append(body.rstrip() + "\n")

    if info.versions:
        parts.append("## Framework versions\n")
        parts.append("\n".join(f"- {k}: {v}" for k, v in info.versions.items()) + "\n")

    parts.append("## Citation\n")
    references = list(dict.fromkeys([*config.spec.references, *info.extra_references]))
    if references:
        parts.append("The training loss is from:\n\n" + citation_section(references))
    else:
        parts.append(f"{config.spec.title[:1].upper()}{config.spec.title[1:]} needs no citation.\n")
    return "\n".join(parts)


def front_matter(meta: Mapping[str, Any]) -> str:
    """The YAML block that opens a card, between its ``---`` lines."""
    import yaml

    return f"---\n{yaml.safe_dump(dict(meta), sort_keys=False, allow_unicode=True, width=1000)}---\n"


def citation_section(references: Sequence[str]) -> str:
    """The BibTeX block of ``references`` (keys of :data:`hf_squareloss.citations.BIBTEX`)."""
    return "```bibtex\n" + bibtex(*dict.fromkeys(references)) + "\n```\n"


def validate_card(text: str) -> None:
    """Raise ``ValueError`` unless ``huggingface_hub`` parses the card strictly."""
    from huggingface_hub import ModelCard

    try:
        ModelCard(text, ignore_metadata_errors=False)
    except Exception as err:  # the hub raises several types for bad metadata
        raise ValueError(f"the model card does not parse: {err}") from err


def save_card(folder: str | os.PathLike, text: str, *, name: str = CARD_FILE) -> Path:
    """Check that ``text`` parses strictly, then write it as ``folder/README.md`` (atomically); return the path."""
    validate_card(text)
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
