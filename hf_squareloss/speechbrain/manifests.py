"""CSV manifests of the ASR recipes and the bookkeeping of their prepare scripts (no SpeechBrain import).

A manifest has the columns ``ID, duration, wav, spk_id, text``: one utterance a row, ``duration`` in seconds,
``wav`` an absolute path readable by soundfile, ``text`` the reference in the recipe's target units (words, or
space-separated phones for TIMIT). Prepare scripts write their manifests and an ``prepare_options.json`` next to
them; a second call with the same options returns the existing files without reading the corpus again.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import soundfile as sf

__all__ = [
    "MANIFEST_FIELDS",
    "audio_duration",
    "mark_prepared",
    "prepared_manifests",
    "read_manifest",
    "write_manifest",
]

MANIFEST_FIELDS = ("ID", "duration", "wav", "spk_id", "text")
_OPTIONS_FILE = "prepare_options.json"


def write_manifest(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``rows`` (dicts with :data:`MANIFEST_FIELDS`) as CSV, atomically; ``ValueError`` on a duplicated ID."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    for row in rows:
        if row["ID"] in seen:
            raise ValueError(f"{path}: duplicated utterance ID {row['ID']!r}")
        seen.add(row["ID"])
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row[key] for key in MANIFEST_FIELDS})
    tmp.replace(path)
    return path


def read_manifest(path: str | Path) -> list[dict[str, str]]:
    """Rows of a manifest written by :func:`write_manifest`."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [f for f in MANIFEST_FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}:1: manifest lacks columns {missing}")
        return list(reader)


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the file header; ``ValueError`` naming the file when soundfile cannot read it."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise ValueError(f"cannot read audio {path}: {err}") from None
    return info.frames / info.samplerate


def prepared_manifests(save_folder: str | Path, options: Mapping[str, Any]) -> dict[str, Path] | None:
    """The manifests of an earlier preparation with the same ``options``, or ``None`` when it must be redone."""
    marker = Path(save_folder) / _OPTIONS_FILE
    if not marker.is_file():
        return None
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    if record.get("options") != json.loads(json.dumps(dict(options))):
        return None
    manifests = {name: Path(path) for name, path in record.get("manifests", {}).items()}
    if not manifests or not all(path.is_file() for path in manifests.values()):
        return None
    return manifests


def mark_prepared(save_folder: str | Path, options: Mapping[str, Any], manifests: Mapping[str, Path]) -> None:
    """Record that ``manifests`` were prepared with ``options`` (written last, so a crash means redo)."""
    marker = Path(save_folder) / _OPTIONS_FILE
    record = {"options": dict(options), "manifests": {name: str(path) for name, path in manifests.items()}}
    tmp = marker.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(marker)
