"""The loss record of a PEFT adapter (LoRA...) on disk.

A PEFT model saves only its adapter: ``adapter_config.json`` and the adapter weights, no ``config.json``. The
record lives in the adapter's config, under ``auto_mapping.hf_squareloss`` (:mod:`hf_squareloss.scores` explains
why there), which PEFT writes from the in-memory config. PEFT replaces that mapping with its own for adapters
without a task type, so :func:`save_adapter_record` writes the record into each saved ``adapter_config.json``
after PEFT has, keeping PEFT's keys.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .scores import CONFIG_KEY

__all__ = ["ADAPTER_CONFIG_FILE", "save_adapter_record"]

ADAPTER_CONFIG_FILE = "adapter_config.json"


def _folder_of(folder: str | os.PathLike, name: str) -> Path:
    return Path(folder) if name == "default" else Path(folder) / name  # PEFT's layout


def save_adapter_record(folder: str | os.PathLike, model: Any) -> list[Path]:
    """Write each adapter's loss record into the ``adapter_config.json`` that ``model.save_pretrained(folder)``
    wrote for it (``folder`` for the adapter named ``default``, ``folder/<name>`` for the others), atomically;
    return the files written. Adapters without a record are left as they are."""
    written = []
    for name, config in dict(getattr(model, "peft_config", None) or {}).items():
        mapping = getattr(config, "auto_mapping", None)
        record = mapping.get(CONFIG_KEY) if isinstance(mapping, dict) else None
        config_file = _folder_of(folder, name) / ADAPTER_CONFIG_FILE
        if record is None or not config_file.is_file():
            continue
        data = json.loads(config_file.read_text(encoding="utf-8"))
        saved = dict(data.get("auto_mapping") or {})
        if saved.get(CONFIG_KEY) == record:
            continue
        data["auto_mapping"] = {**saved, CONFIG_KEY: record}
        tmp = config_file.with_name(f".{config_file.name}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(config_file)
        written.append(config_file)
    return written
