"""Model cards that say exactly how a model was trained: loss, parameters, label noise, results, citations.

A card is Markdown with YAML metadata that ``huggingface_hub.ModelCard(text, ignore_metadata_errors=False)``
accepts: ``library_name``, ``base_model``, ``datasets``, ``tags``, ``pipeline_tag``, a ``model-index`` carrying every
evaluation metric with its task and dataset (name, config, split), and an ``hf_squareloss`` block with the loss
type, ``k``, ``M``, ``alpha`` and the label-noise settings. The body gives the loss formula, how to read the model's
outputs, the training hyper-parameters, the results and the BibTeX of the paper(s) whose loss was used.

:func:`write_run_card` builds the card of a GLUE recipe run from its output folder alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .citations import bibtex
from .registry import LossConfig

__all__ = ["CardMetric", "ModelCardInfo", "card_info_from_run", "render_model_card", "write_run_card"]

CARD_FILE = "README.md"

# the training arguments a reader needs to reproduce a run, in the order shown
_HYPERPARAMETERS = (
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

# metric key (without eval_) -> (model-index type, pretty name)
_METRIC_NAMES = {
    "accuracy": ("accuracy", "Accuracy"),
    "f1": ("f1", "F1 (positive class)"),
    "matthews_correlation": ("matthews_correlation", "Matthews correlation"),
    "pearson": ("pearson", "Pearson correlation"),
    "spearmanr": ("spearmanr", "Spearman correlation"),
    "combined_score": ("combined_score", "Combined score"),
    "loss": ("loss", "Validation loss"),
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
    """The ``hf_squareloss`` loss record (``loss_type``, its parameters, ``num_classes``, ...)."""
    base_model: str | None = None
    base_model_note: str | None = None
    dataset_id: str | None = None
    dataset_name: str | None = None
    dataset_config: str | None = None
    dataset_note: str | None = None
    task_type: str = "text-classification"
    task_name: str = "Text Classification"
    metrics: list[CardMetric] = field(default_factory=list)
    label_noise: Mapping[str, Any] | None = None
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    protocol: Mapping[str, Any] | None = None
    history: Sequence[Mapping[str, Any]] = ()
    label_names: Sequence[str] = ()
    extra_tags: Sequence[str] = ()
    language: str | None = "en"
    versions: Mapping[str, str] = field(default_factory=dict)
    notes: Sequence[str] = ()
    library_name: str = "transformers"
    how_to_read: str | None = None
    """Replaces the text-classification reading instructions (e.g. for a speech recogniser)."""
    extra_references: Sequence[str] = ()
    """BibTeX keys cited besides the loss's own (e.g. TCE for a Tamed CTC branch)."""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.4g}"
    return str(value)


def _loss_block(info: ModelCardInfo) -> dict[str, Any]:
    loss = dict(info.loss)
    config = LossConfig.from_dict(loss)
    block: dict[str, Any] = {
        "loss_type": config.loss_type,
        "k": config.params.get("k"),
        "M": config.params.get("M"),
        "alpha": config.params.get("alpha"),
    }
    if "label_smoothing" in config.params:
        block["label_smoothing"] = config.params["label_smoothing"]
    if loss.get("num_classes") is not None:
        block["num_classes"] = int(loss["num_classes"])
    block["parameters_source"] = loss.get("source", "user")
    noise = info.label_noise
    block["label_noise"] = (
        {
            "rate": noise.get("rate"),
            "type": noise.get("noise_type"),
            "exact": noise.get("exact"),
            "seed": noise.get("seed"),
            "realised_rate": noise.get("realised_rate"),
            "num_flipped": noise.get("num_flipped"),
        }
        if noise
        else None
    )
    if loss.get("hf_squareloss_version"):
        block["version"] = loss["hf_squareloss_version"]
    return block


def _tags(info: ModelCardInfo, config: LossConfig) -> list[str]:
    tags = ["hf-squareloss", config.loss_type]
    descriptive = {"square": "square-loss", "tce": "tamed-cross-entropy"}.get(config.loss_type)
    if descriptive:
        tags.append(descriptive)
    if info.label_noise:
        tags.append("label-noise")
    tags += [t for t in info.extra_tags if t not in tags]
    return tags


def metadata(info: ModelCardInfo) -> dict[str, Any]:
    """The card's YAML metadata as a dict (validated by ``huggingface_hub``'s ``ModelCardData``)."""
    from huggingface_hub import EvalResult, ModelCardData

    config = LossConfig.from_dict(info.loss)
    results = [
        EvalResult(
            task_type=info.task_type,
            task_name=info.task_name,
            dataset_type=info.dataset_id or "custom",
            dataset_name=info.dataset_name or info.dataset_id or "custom",
            dataset_config=info.dataset_config,
            dataset_split=m.split,
            metric_type=m.type,
            metric_value=float(m.value),
            metric_name=m.name,
        )
        for m in info.metrics
    ]
    data = ModelCardData(
        base_model=info.base_model,
        datasets=[info.dataset_id] if info.dataset_id else None,
        language=info.language,
        library_name=info.library_name,
        pipeline_tag=info.task_type,
        tags=_tags(info, config),
        metrics=sorted({m.type for m in info.metrics if m.type != "loss"}) or None,
        model_name=info.model_name,
        eval_results=results or None,
        hf_squareloss=_loss_block(info),
        ignore_metadata_errors=False,
    )
    return data.to_dict()


def _how_to_read(config: LossConfig, label_names: Sequence[str]) -> str:
    if config.spec.outputs == "scores":
        m = config.params.get("M", 1.0)
        return (
            "This model was trained with the square loss on raw logits: its outputs are **scores**, not "
            f"log-probabilities. The true class was trained towards {_fmt(m)} and every other class towards 0. "
            "Do not apply a softmax; read the scores as they are, or divided by M, and predict with argmax:\n\n"
            "```python\nfrom transformers import pipeline\n\n"
            'classify = pipeline("text-classification", model="<this model>", function_to_apply="none", top_k=None)\n'
            "```\n\n"
            "`hf_squareloss.logits_to_scores(logits, model)` returns `logits / M` (1 = training target of the true "
            "class). These scores are not probabilities: they need not sum to 1 and may leave [0, 1]."
        )
    return (
        f"This model was trained with {config.spec.title} on softmax probabilities: a softmax of its logits gives "
        "class probabilities, which is what the default pipeline returns:\n\n"
        "```python\nfrom transformers import pipeline\n\n"
        'classify = pipeline("text-classification", model="<this model>")\n```'
    )


def _results_table(info: ModelCardInfo) -> str:
    lines = ["| split | metric | value |", "| --- | --- | --- |"]
    for m in info.metrics:
        lines.append(f"| {m.split} | {m.name} (`{m.key}`) | {m.value:.4f} |")
    return "\n".join(lines)


def _history_table(history: Sequence[Mapping[str, Any]]) -> str:
    if not history:
        return ""
    keys = [k for k in history[0] if k.startswith("eval_") and k not in ("eval_samples",)]
    header = "| epoch | step | train loss | " + " | ".join(keys) + " |"
    lines = [header, "|" + " --- |" * (3 + len(keys))]
    for h in history:
        cells = [_fmt(h.get("epoch")), _fmt(h.get("step")), _fmt(h.get("train_loss", "-"))]
        cells += [f"{h[k]:.4f}" if isinstance(h.get(k), (int, float)) else "-" for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_model_card(info: ModelCardInfo) -> str:
    """The full card text (YAML front matter + Markdown body)."""
    import yaml

    config = LossConfig.from_dict(info.loss)
    meta = metadata(info)
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)
    params = ", ".join(f"{k} = {_fmt(v)}" for k, v in config.params.items()) or "none"
    parts = [f"---\n{front}---\n", f"# {info.model_name}\n"]
    article = "An" if info.task_name[:1].lower() in "aeiou" else "A"
    intro = f"{article} {info.task_name.lower()} model"
    if info.base_model:
        intro += f" fine-tuned from `{info.base_model}`"
    if info.dataset_name:
        intro += f" on {info.dataset_name}"
    parts.append(
        intro + f", trained with the **{config.spec.title}** through "
        "[hf-squareloss](https://github.com/hf-squareloss/hf-squareloss).\n"
    )
    if info.base_model_note:
        parts.append(info.base_model_note + "\n")
    parts.append("## Training loss\n")
    parts.append(
        f"`loss_type = {config.loss_type}`, parameters: {params} "
        f"(source: {info.loss.get('source', 'user')}).\n"
    )
    parts.append(f"Per example, with logits $f$ and label $y$ over $C$ classes: {config.spec.formula}.\n")
    parts.append("## How to read the outputs\n")
    parts.append((info.how_to_read or _how_to_read(config, info.label_names)) + "\n")
    if info.label_names:
        parts.append("Labels: " + ", ".join(f"{i} = `{n}`" for i, n in enumerate(info.label_names)) + ".\n")
    parts.append("## Training data\n")
    data_line = f"Dataset: {info.dataset_name or info.dataset_id or 'custom'}"
    if info.dataset_id:
        data_line += (
            f" (`{info.dataset_id}`"
            + (f", config `{info.dataset_config}`" if info.dataset_config else "")
            + ")"
        )
    parts.append(data_line + ".\n")
    if info.dataset_note:
        parts.append(info.dataset_note + "\n")
    if info.label_noise:
        n = info.label_noise
        parts.append(
            f"**Label noise**: the training labels were corrupted on purpose ({n.get('noise_type')} noise, rate "
            f"{_fmt(n.get('rate'))}{', exact count' if n.get('exact') else ''}, noise seed {n.get('seed')}): "
            f"{n.get('num_flipped')} of {n.get('num_examples')} labels changed, a realised rate of "
            f"{float(n.get('realised_rate', 0)):.4f}. Evaluation labels are clean.\n"
        )
    parts.append("## Training procedure\n")
    if info.protocol:
        proto = ", ".join(
            f"{k} = {_fmt(v)}"
            for k, v in info.protocol.items()
            if v is not None and not isinstance(v, (dict, list))
        )
        parts.append(f"Protocol: {proto}.\n")
    if info.hyperparameters:
        rows = ["| hyper-parameter | value |", "| --- | --- |"]
        rows += [f"| {k} | {_fmt(v)} |" for k, v in info.hyperparameters.items()]
        parts.append("\n".join(rows) + "\n")
    parts.append("## Results\n")
    parts.append(_results_table(info) + "\n")
    hist = _history_table(info.history)
    if hist:
        parts.append("Validation during training:\n\n" + hist + "\n")
    for note in info.notes:
        parts.append(note + "\n")
    if info.versions:
        parts.append("Framework versions: " + ", ".join(f"{k} {v}" for k, v in info.versions.items()) + ".\n")
    parts.append("## Citation\n")
    references = list(dict.fromkeys([*config.spec.references, *info.extra_references]))
    if references:
        parts.append("The training loss is from:\n\n```bibtex\n" + bibtex(*references) + "\n```\n")
    else:
        parts.append("Softmax cross-entropy needs no citation; this model is the cross-entropy baseline.\n")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# GLUE recipe runs
# ---------------------------------------------------------------------------------------------------------------
def _read(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _glue_metrics(
    eval_metrics: Mapping[str, Any], eval_splits: Sequence[str], loss_type: str
) -> list[CardMetric]:
    out = []
    for key, value in eval_metrics.items():
        if not key.startswith("eval_") or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        name = key[len("eval_") :]
        split = eval_splits[0] if eval_splits else "validation"
        if name.endswith("_mm") and len(eval_splits) > 1:
            name, split = name[: -len("_mm")], eval_splits[1]
        if name not in _METRIC_NAMES or not math.isfinite(float(value)):
            continue
        mtype, pretty = _METRIC_NAMES[name]
        if name == "loss":
            pretty = f"{pretty} ({loss_type})"
        out.append(CardMetric(key=key, type=mtype, name=pretty, value=float(value), split=split))
    return out


def card_info_from_run(run_dir: str | Path, *, base_model: str | None = None) -> ModelCardInfo:
    """The card of a finished GLUE recipe run, from its output folder alone.

    ``base_model`` names the Hub id of the model the run started from; by default the recipe's
    ``base_model_id`` argument, else its ``model_name_or_path`` when that is not a local folder.
    """
    from .glue.outputs import DATASET_FILE, LABEL_NOISE_FILE, RUN_ARGS_FILE, read_summary
    from .glue.tasks import get_task

    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    run_args = _read(run_dir / RUN_ARGS_FILE) if (run_dir / RUN_ARGS_FILE).is_file() else {}
    dataset = _read(run_dir / DATASET_FILE) if (run_dir / DATASET_FILE).is_file() else {}
    noise = _read(run_dir / LABEL_NOISE_FILE) if (run_dir / LABEL_NOISE_FILE).is_file() else None
    if noise is not None:
        noise = {k: v for k, v in noise.items() if k not in ("flipped_indices", "flipped_idx")}
    task = get_task(summary["task"])
    model_args = run_args.get("model", {})
    training = run_args.get("training", {})
    source = summary.get("model_name_or_path") or model_args.get("model_name_or_path")
    base = base_model or model_args.get("base_model_id")
    note = None
    if base is None and source and not Path(source).exists():
        base = source
    elif base is None and source:
        note = (
            f"The run started from a local copy of its base model (`{Path(source).name}`); its Hub id was not "
            "given (`--base_model_id`)."
        )
    origin = dataset.get("origin") or summary.get("data_origin")
    dataset_note = None
    if origin and origin != "hub":
        files = dataset.get("files") or {}
        listed = ", ".join(
            f"{split}: `{Path(str(f.get('path', f) if isinstance(f, dict) else f)).name}`"
            + (
                f" (sha256 `{f['sha256'][:12]}...`, {f['rows']} rows)"
                if isinstance(f, dict) and "sha256" in f
                else ""
            )
            for split, f in files.items()
        )
        dataset_note = (
            f"Read from GLUE's original TSV files ({listed or dataset.get('data_dir', 'local files')}) "
            "instead of the Hub copy."
        )
    if summary.get("max_train_samples"):
        extra = f" Training used the first {summary['num_train_examples']} training examples."
        dataset_note = (dataset_note or "") + extra
    hyper = {k: training[k] for k in _HYPERPARAMETERS if k in training and training[k] not in (None, "", [])}
    data_args = run_args.get("data", {})
    if data_args.get("max_seq_length"):
        hyper["max_seq_length"] = data_args["max_seq_length"]
    if summary.get("epochs_trained") is not None:
        hyper["epochs trained"] = summary["epochs_trained"]
    if summary.get("model_epoch") is not None:
        hyper["epoch of the saved model"] = summary["model_epoch"]
    loss_type = summary["loss"]["loss_type"]
    name = training.get("hub_model_id") or "-".join(
        p
        for p in (
            Path(str(base or source or "model")).name,
            "glue",
            task.name,
            loss_type,
            f"noise{_fmt(noise['rate'])}" if noise else None,
            f"seed{summary.get('seed')}",
        )
        if p
    )
    return ModelCardInfo(
        model_name=Path(name).name,
        loss=summary["loss"],
        base_model=base,
        base_model_note=note,
        dataset_id="nyu-mll/glue",
        dataset_name=f"GLUE {task.folder}",
        dataset_config=task.name,
        dataset_note=dataset_note,
        task_type="text-classification",
        task_name="Text Classification",
        metrics=_glue_metrics(
            summary.get("eval_metrics", {}), list(dataset.get("eval_splits") or task.eval_splits), loss_type
        ),
        label_noise=noise or summary.get("label_noise"),
        hyperparameters=hyper,
        protocol=summary.get("protocol"),
        history=summary.get("history", ()),
        label_names=list(task.label_names or ()),
        extra_tags=["text-classification", "glue", task.name],
        versions=summary.get("versions", {}),
    )


def write_run_card(run_dir: str | Path, *, base_model: str | None = None) -> Path:
    """Write ``README.md`` (the model card) into a finished GLUE run folder; return its path."""
    return save_card(run_dir, render_model_card(card_info_from_run(run_dir, base_model=base_model)))


def save_card(folder: str | Path, text: str) -> Path:
    """Check that ``text`` parses strictly, then write it as ``folder/README.md`` (atomically); return the path."""
    validate_card(text)
    path = Path(folder) / CARD_FILE
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def validate_card(text: str) -> None:
    """Raise ``ValueError`` unless ``huggingface_hub`` parses the card strictly."""
    from huggingface_hub import ModelCard

    try:
        ModelCard(text, ignore_metadata_errors=False)
    except Exception as err:  # the hub raises several types for bad metadata
        raise ValueError(f"the model card does not parse: {err}") from err


def write_card(folder: str | Path, *, base_model: str | None = None) -> Path:
    """Write the card of a finished GLUE or ASR recipe run folder, or of a comparison sweep folder."""
    from .asr_card import is_asr_run, write_asr_card
    from .glue.outputs import SUMMARY_FILE

    folder = Path(folder)
    if (folder / SUMMARY_FILE).is_file():
        return write_run_card(folder, base_model=base_model)
    if is_asr_run(folder):
        return write_asr_card(folder, base_model=base_model)
    if (folder / SWEEP_RESULTS_FILE).is_file():
        return save_card(folder, render_sweep_card(folder, base_model=base_model))
    raise ValueError(
        f"{folder} is neither a finished run folder (no {SUMMARY_FILE}; an ASR run has results.json), nor a "
        "sweep folder"
    )


# ---------------------------------------------------------------------------------------------------------------
# comparison sweeps
# ---------------------------------------------------------------------------------------------------------------
SWEEP_RESULTS_FILE = "results.json"


def _pct(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return f"{100 * value:.2f}"


def _mean_std(stats: Mapping[str, Any] | None) -> str:
    if not stats or stats.get("mean") is None:
        return "-"
    std = stats.get("std")
    return f"{_pct(stats['mean'])} ± {_pct(std)}" if std is not None else _pct(stats["mean"])


def _sweep_loss_records(root: Path, runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """loss_type -> the loss record of one of its runs (they share the settings within a sweep)."""
    from .glue.outputs import SUMMARY_FILE

    records: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run["loss_type"] in records:
            continue
        path = root / str(run["run_dir"]) / SUMMARY_FILE
        if path.is_file():
            records[run["loss_type"]] = _read(path)["loss"]
    return records


def render_sweep_card(root: str | Path, *, base_model: str | None = None) -> str:
    """The card of a comparison sweep folder (``hf-squareloss compare``), from its ``results.json``."""
    import yaml
    from huggingface_hub import ModelCardData

    from .compare.paper import HUI_BELKIN_BERT, HUI_BELKIN_SEEDS
    from .glue.tasks import get_task

    root = Path(root)
    results = _read(root / SWEEP_RESULTS_FILE)
    sweep, summary, runs = results["sweep"], results["summary"], results["runs"]
    spec = sweep.get("spec", {})
    losses = list(dict.fromkeys(row["loss_type"] for row in summary))
    records = _sweep_loss_records(root, runs)
    noise_rates = sorted({float(row["noise_rate"]) for row in summary})
    source = spec.get("model_name_or_path")
    base = base_model or spec.get("base_model_id")
    if base is None and source and not Path(str(source)).exists():
        base = source
    configs = {t: LossConfig.from_dict(r) for t, r in records.items()}
    block = {
        "kind": "loss comparison",
        "losses": [
            {"loss_type": t, "k": c.params.get("k"), "M": c.params.get("M"), "alpha": c.params.get("alpha")}
            for t, c in configs.items()
        ],
        "label_noise": {"type": spec.get("noise_type"), "rates": noise_rates} if any(noise_rates) else None,
        "seeds": spec.get("seeds"),
        "tasks": spec.get("tasks"),
    }
    tags = ["hf-squareloss", "loss-comparison", *losses, "glue", "text-classification"]
    if any(noise_rates):
        tags.append("label-noise")
    meta = ModelCardData(
        base_model=base,
        datasets=["nyu-mll/glue"],
        language="en",
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=list(dict.fromkeys(tags)),
        hf_squareloss=block,
        ignore_metadata_errors=False,
    ).to_dict()
    parts = [f"---\n{yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)}---\n"]
    model_name = Path(str(base or source or "model")).name
    parts.append(f"# Loss comparison on GLUE: {', '.join(losses)} ({model_name})\n")
    parts.append(
        f"{len(runs)} fine-tuning runs of `{model_name}` made with "
        "[hf-squareloss](https://github.com/hf-squareloss/hf-squareloss) `compare`: every loss on the same data, "
        f"seeds {spec.get('seeds')} and label-noise rates {noise_rates} (training labels only; validation "
        "labels are clean). Numbers are validation (dev) metrics in %, mean ± sample standard deviation over "
        "seeds; Δ is the difference of means to cross-entropy in the same column.\n"
    )
    if sweep.get("command"):
        parts.append(f"Command:\n\n```bash\n{sweep['command']}\n```\n")
    if sweep.get("wall_seconds_all_sessions") is not None:
        parts.append(f"Wall time: {sweep['wall_seconds_all_sessions'] / 3600:.2f} h.\n")
    parts.append("## Losses\n")
    for loss_type, config in configs.items():
        params = ", ".join(f"{k} = {_fmt(v)}" for k, v in config.params.items()) or "no parameters"
        parts.append(f"- `{loss_type}`: {config.spec.title}, {params}. {config.spec.formula}.")
    parts.append("")
    for task_name in dict.fromkeys(row["task"] for row in summary):
        task = get_task(task_name)
        for protocol in dict.fromkeys(r["protocol"] for r in summary if r["task"] == task_name):
            rows = [r for r in summary if r["task"] == task_name and r["protocol"] == protocol]
            for metric in task.metrics:
                parts.append(f"## {task.folder}, {protocol.replace('_', ' ')}: {metric}\n")
                header = "| loss | " + " | ".join(f"noise {_fmt(n)} | Δ vs ce" for n in noise_rates)
                published = HUI_BELKIN_BERT.get(task_name, {}).get(metric)
                header += " | Hui & Belkin (BERT) |" if published else " |"
                lines = [header, "|" + " --- |" * (1 + 2 * len(noise_rates) + (1 if published else 0))]
                for loss_type in losses:
                    cells = []
                    for rate in noise_rates:
                        row = next(
                            (
                                r
                                for r in rows
                                if r["loss_type"] == loss_type and float(r["noise_rate"]) == rate
                            ),
                            None,
                        )
                        ce = next(
                            (
                                r
                                for r in summary
                                if r["task"] == task_name
                                and r["loss_type"] == "ce"
                                and r["protocol"] == "early_stopping"
                                and float(r["noise_rate"]) == rate
                            ),
                            None,
                        )
                        stats = row["metrics"].get(metric) if row else None
                        cells.append(_mean_std(stats))
                        if row and ce and loss_type != "ce" and stats and stats.get("mean") is not None:
                            cells.append(f"{100 * (stats['mean'] - ce['metrics'][metric]['mean']):+.2f}")
                        else:
                            cells.append("")
                    line = f"| {loss_type} | " + " | ".join(cells)
                    if published:
                        line += f" | {published.get(loss_type, '-')} |"
                    else:
                        line += " |"
                    lines.append(line)
                parts.append("\n".join(lines) + "\n")
        if HUI_BELKIN_BERT.get(task_name):
            parts.append(
                f"Hui & Belkin's column: BERT fine-tuned on the full task, mean of {HUI_BELKIN_SEEDS} seeds, "
                "clean labels, as published; not comparable in scale with these runs.\n"
            )
    parts.append("## Per-seed numbers\n")
    metric_cols = [m for m in dict.fromkeys(k for r in runs for k in r if k in _METRIC_NAMES and k != "loss")]
    lines = [
        "| task | protocol | loss | noise | realised | seed | " + " | ".join(metric_cols) + " | epoch kept |",
        "|" + " --- |" * (7 + len(metric_cols)),
    ]
    for r in runs:
        metrics = " | ".join(_pct(r.get(m)) for m in metric_cols)
        lines.append(
            f"| {r['task']} | {r['protocol']} | {r['loss_type']} | {_fmt(float(r['noise_rate']))} | "
            f"{float(r.get('realised_noise_rate') or 0):.3f} | {r['seed']} | {metrics} | "
            f"{_fmt(r.get('model_epoch'))} |"
        )
    parts.append("\n".join(lines) + "\n")
    plots = sorted(p.name for p in root.glob("*.png"))
    if plots:
        parts.append("## Plots\n")
        parts += [f"![{p.removesuffix('.png').replace('_', ' ')}]({p})\n" for p in plots]
    refs = [key for c in configs.values() for key in c.spec.references]
    refs.append("hui2021evaluation")
    parts.append("## Citation\n\n```bibtex\n" + bibtex(*dict.fromkeys(refs)) + "\n```\n")
    return "\n".join(parts)
