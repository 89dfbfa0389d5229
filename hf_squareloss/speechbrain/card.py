"""Model cards of the ASR recipes' runs (``recipes/asr/<corpus>``), from their output folder alone.

A finished run's ``results.json`` holds the loss record, the corpus, the recipe's scalar hyper-parameters and the
error rates of every evaluated set (beam search, percent) and of the best epoch (greedy). The card is the Trainer's
card (:mod:`hf_squareloss.model_card`) with the recogniser's own reading instructions and error rates; it reads only
that file, so this module does not import SpeechBrain.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..model_card import CardMetric, ModelCardInfo, render_model_card, save_card
from ..registry import LossConfig

__all__ = ["RESULTS_KIND", "card_info_from_asr_run", "is_asr_run", "write_asr_card"]

RESULTS_FILE = "results.json"
RESULTS_KIND = "asr_run"
"""The ``kind`` an ASR run writes into its ``results.json``: the folder says what it is."""

# corpus (the recipe folder's name) -> (name shown, Hub dataset id when the corpus is on the Hub)
CORPORA: dict[str, tuple[str, str | None]] = {
    "an4": ("CMU AN4 (Census)", None),
    "timit": ("TIMIT", None),
    "wsj": ("WSJ (si284)", None),
    "librispeech": ("LibriSpeech", "openslr/librispeech_asr"),
    "yesno": ("yesno", None),
}

_RATE = re.compile(r"^(?P<split>[A-Za-z0-9_.-]+?)_(?P<metric>wer|cer|per)$")
_METRIC_NAMES = {"wer": "WER", "cer": "CER", "per": "PER"}


def _read_results(folder: Path) -> dict[str, Any] | None:
    path = folder / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def is_asr_run(folder: str | Path) -> bool:
    """True when ``folder`` holds the ``results.json`` of an ASR recipe run.

    Its ``kind`` says so; a folder written before runs recorded their kind is recognised by its loss and CTC
    weight."""
    data = _read_results(Path(folder))
    if not data:
        return False
    if "kind" in data:
        return data["kind"] == RESULTS_KIND
    return "loss" in data and "ctc_weight" in data


def _metrics(results: dict[str, Any]) -> list[CardMetric]:
    out = []
    test_alias = results.get("test_set") not in (None, "test")  # test_wer repeats <test_set>_wer
    for key, value in results.items():
        match = _RATE.match(key)
        if not match or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        split, metric = match["split"], match["metric"]
        if split == "test" and test_alias:
            continue
        if split.endswith("_greedy"):
            split = split[: -len("_greedy")]
            epoch = "best epoch"
            if split.startswith("last_"):
                split, epoch = split[len("last_") :], "last epoch"
            how = f"attention decoder alone, greedy, {epoch}"
        else:
            how = "joint CTC-attention beam search"
        out.append(
            CardMetric(
                key=key, type=metric, name=f"{_METRIC_NAMES[metric]} ({how})", value=float(value), split=split
            )
        )
    return out


def _how_to_read(config: LossConfig, results: dict[str, Any]) -> str:
    ctc = float(results.get("ctc_weight", 0.0))
    lines = [
        f"A joint CTC-attention recogniser: the CTC branch (weight {ctc:g} in the training loss) and the "
        f"attention decoder, whose softmax cross-entropy was replaced by the {config.spec.title}. Decode with the "
        "recipe's beam search, which adds the CTC prefix scores to the decoder's."
    ]
    if config.spec.outputs == "scores":
        scale = results.get("score_scale")
        lines.append(
            "The decoder was trained with the square loss on raw logits: its outputs are **scores**, not "
            "log-probabilities. For the beam search the recipe turns them into log-probabilities as "
            "`log_softmax(s * f / M)`"
            + (
                f", with the sharpness s = {float(scale):.3g} ({results.get('score_scale_source', 'fitted')})."
                if scale is not None
                else "."
            )
            + " Do not feed the raw logits to a decoder that expects log-probabilities."
        )
    else:
        lines.append("The decoder's log-softmax gives log-probabilities, as in a stock SpeechBrain recipe.")
    return "\n\n".join(lines)


def card_info_from_asr_run(folder: str | Path, *, base_model: str | None = None) -> ModelCardInfo:
    """The card of a finished ASR recipe run, from its ``results.json``."""
    folder = Path(folder)
    results = _read_results(folder)
    if not results or "loss" not in results:
        raise ValueError(f"{folder} has no {RESULTS_FILE} of an ASR recipe run")
    loss = dict(results["loss"])
    config = LossConfig.from_dict(loss)
    corpus = str(results.get("corpus") or "custom")
    name, dataset_id = CORPORA.get(corpus, (corpus, None))
    ctc_alpha = float(results.get("ctc_alpha", 0.0) or 0.0)
    notes = []
    extra_refs: list[str] = []
    if ctc_alpha > 0:
        notes.append(
            f"CTC branch: **Tamed CTC** with alpha = {ctc_alpha:g}, an extension of hf-squareloss: the TCE transform "
            "`((1 + nll)^(1-alpha) - 1) / (1-alpha)` applied to each utterance's CTC negative log-likelihood."
        )
        extra_refs.append("martinez2018taming")
    hyper = dict(results.get("hyperparameters") or {})
    for key in (
        "ctc_weight",
        "ctc_alpha",
        "number_of_epochs",
        "seed",
        "units",
        "output_neurons",
        "world_size",
    ):
        if key in results:
            hyper.setdefault(key, results[key])
    if results.get("score_scale") is not None:  # the sharpness the beam search used, not the YAML's default
        hyper["score_scale"] = results["score_scale"]
    if results.get("best_epoch") is not None:
        hyper["epoch of the kept model"] = results["best_epoch"]
    return ModelCardInfo(
        model_name=f"{corpus}-{config.loss_type}-seed{results.get('seed', 0)}",
        loss=loss,
        base_model=base_model,
        base_model_note=None if base_model else "Trained from scratch (no pretrained model).",
        dataset_id=dataset_id,
        dataset_name=name,
        dataset_config=None,
        task_type="automatic-speech-recognition",
        metrics=_metrics(results),
        hyperparameters=hyper,
        extra_tags=["speechbrain", "asr", corpus],
        notes=notes,
        library_name="speechbrain",
        how_to_read=_how_to_read(config, results),
        extra_references=extra_refs,
        versions=dict(results.get("versions") or {}),
    )


def write_asr_card(folder: str | Path, *, base_model: str | None = None) -> Path:
    """Write ``README.md`` (the model card) into a finished ASR recipe run folder; return its path."""
    return save_card(folder, render_model_card(card_info_from_asr_run(folder, base_model=base_model)))
