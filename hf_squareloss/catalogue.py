"""The registered losses as a user reads them: ``hf-squareloss losses`` and :func:`loss_catalogue`.

Everything here is read from the registry (:mod:`hf_squareloss.registry`): a loss registered with
:func:`~hf_squareloss.registry.register_loss` is listed like the built-in ones. For each loss: its ``loss_type``,
title, per-item formula, what its trained logits mean, its forms on the heads where it is not that per-item
formula (on CTC heads: its CTC form, or "does not apply"; from hidden states: the function that computes it without
the logits, or "logits only"), its parameters with their defaults and search ranges, the
``SquareLossTrainingArguments`` flag and the SpeechBrain YAML key of each, and its references.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .citations import BIBTEX
from .registry import get_loss_spec, loss_types

__all__ = ["format_catalogue", "loss_catalogue"]

_HOOK_DEFAULT = "auto (from the other values and the number of classes)"


def _default_text(default: Any, setting: bool) -> str:
    if default is None:
        return "none" if setting else _HOOK_DEFAULT
    return format(default, "g") if isinstance(default, float) else repr(default)


def loss_catalogue(names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One record per loss type (all registered ones when ``names`` is None), JSON-serialisable."""
    entries = []
    for loss_type in names or loss_types():
        spec = get_loss_spec(loss_type)  # ValueError naming the known types for an unknown one
        params = []
        for param in spec.params:
            params.append(
                {
                    "name": param.name,
                    "flag": f"--{param.field_name(spec.loss_type)}",
                    "yaml_key": param.name,
                    "default": param.default,
                    "default_text": _default_text(param.default, param.setting),
                    "choices": list(param.choices) if param.choices else None,
                    "search": list(param.search) if param.search else None,
                    "help": param.help,
                }
            )
        linear = spec.linear
        entries.append(
            {
                "loss_type": spec.loss_type,
                "title": spec.title,
                "function": f"{spec.function.__module__}.{spec.function.__qualname__}",
                "formula": spec.formula,
                "outputs": spec.outputs,
                "raw_logits": spec.raw_logits,
                "ctc": {"name": spec.ctc.name, "formula": spec.ctc.formula} if spec.ctc else None,
                "hidden_states": f"{linear.__module__}.{linear.__qualname__}" if linear else None,
                "params": params,
                "references": {key: BIBTEX.get(key) for key in spec.references},
            }
        )
    return entries


def _outputs_text(entry: dict[str, Any]) -> str:
    if entry["outputs"] == "scores":
        return "scores, not softmax logits (logits_to_scores serves probabilities after temperature scaling)"
    return "logits of a softmax (probabilities: softmax of the logits)"


def format_catalogue(entries: Sequence[dict[str, Any]], *, full: bool = False, as_json: bool = False) -> str:
    """Text for ``hf-squareloss losses``: a line per loss, or every field when ``full``; or JSON."""
    if as_json:
        return json.dumps(list(entries), indent=2, default=str)
    if not full:
        width = max((len(e["loss_type"]) for e in entries), default=0)
        lines = []
        for e in entries:
            params = ", ".join(f"{p['name']}={p['default_text'].split(' (')[0]}" for p in e["params"])
            lines.append(f"{e['loss_type']:<{width}}  {e['title']}" + (f"  [{params}]" if params else ""))
        lines.append("")
        lines.append(
            "`hf-squareloss losses NAME ...` for the formula, the flags and YAML keys, and the references."
        )
        return "\n".join(lines)
    blocks = []
    for e in entries:
        lines = [
            f"{e['loss_type']}: {e['title']}",
            f"  function:  {e['function']}",
            f"  per item:  {e['formula']}",
            f"  outputs:   {_outputs_text(e)}",
            "  on CTC:    "
            + (f"{e['ctc']['name']}, per utterance: {e['ctc']['formula']}" if e["ctc"] else "does not apply"),
            "  hidden states (loss_from_hidden_states): "
            + (e["hidden_states"] or "no such form (trains through the logits)"),
        ]
        if e["params"]:
            lines.append("  parameters (TrainingArguments flag / SpeechBrain YAML key, default):")
            for p in e["params"]:
                choices = f"; one of {', '.join(p['choices'])}" if p["choices"] else ""
                if p["search"]:
                    low, high, log = p["search"]
                    choices += f"; searched in [{low:g}, {high:g}]{' (log scale)' if log else ''}"
                lines.append(f"    {p['flag']} / {p['yaml_key']}: {p['default_text']}{choices}")
                lines.append(f"        {p['help']}")
        else:
            lines.append("  parameters: none")
        for key, bib in e["references"].items():
            lines.append(f"  reference: {key}" + ("" if bib else " (no BibTeX registered)"))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
