"""Loading a GLUE task: from the Hub dataset ``nyu-mll/glue`` or from the task's original TSV files.

Both give a :class:`datasets.DatasetDict` with the Hub's split names, column names and ``ClassLabel`` feature,
and a description of where the data came from (recorded with every run).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from .tasks import GlueTask, get_task
from .tsv import GlueDataError, read_glue_tsv

__all__ = ["HUB_DATASET", "GlueData", "glue_features", "load_glue"]

HUB_DATASET = "nyu-mll/glue"


@dataclass
class GlueData:
    """A task's splits and their provenance."""

    task: GlueTask
    splits: datasets.DatasetDict
    source: dict[str, Any] = field(default_factory=dict)
    """``origin`` (``"hub"`` or ``"tsv"``), ``dataset``, ``config_name``, and the files or Hub revision used."""


def glue_features(task: GlueTask) -> datasets.Features:
    """The features of ``task`` as on the Hub: text columns, ``label`` (``ClassLabel`` or float) and ``idx``."""
    label = (
        datasets.Value("float32")
        if task.is_regression
        else datasets.ClassLabel(names=list(task.label_names or ()))
    )
    return datasets.Features(
        {
            **{c: datasets.Value("string") for c in task.text_columns},
            "label": label,
            "idx": datasets.Value("int32"),
        }
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_tsv(task: GlueTask, data_dir: Path, splits: Sequence[str]) -> GlueData:
    if not data_dir.is_dir():
        raise GlueDataError(
            f"--data_dir {data_dir} is not a folder; it must hold {task.folder}'s original GLUE files "
            f"({', '.join(task.tsv.files.values())})"
        )
    features = glue_features(task)
    out = datasets.DatasetDict()
    files: dict[str, Any] = {}
    for split in splits:
        path = data_dir / task.tsv.files[split]
        columns = read_glue_tsv(path, task)
        out[split] = datasets.Dataset.from_dict(columns, features=features, split=split)
        files[split] = {"path": str(path.resolve()), "sha256": _sha256(path), "rows": len(columns["label"])}
    source = {
        "origin": "tsv",
        "dataset": HUB_DATASET,
        "config_name": task.name,
        "data_dir": str(data_dir.resolve()),
        "files": files,
    }
    return GlueData(task, out, source)


def _load_hub(
    task: GlueTask, dataset_name: str, splits: Sequence[str], cache_dir: str | None, revision: str | None
) -> GlueData:
    try:
        loaded = datasets.load_dataset(dataset_name, task.name, cache_dir=cache_dir, revision=revision)
    except Exception as err:  # offline, unknown repository, network errors: all need the same advice
        raise GlueDataError(
            f"could not load {dataset_name!r} (config {task.name!r}) from the Hugging Face Hub: "
            f"{type(err).__name__}: {err}. Without Hub access, pass --data_dir with {task.folder}'s original "
            "TSV files."
        ) from err
    out = datasets.DatasetDict()
    for split in splits:
        if split not in loaded:
            raise GlueDataError(f"{dataset_name}/{task.name} has no split {split!r} (found {list(loaded)})")
        ds = loaded[split]
        missing = [c for c in (*task.text_columns, "label") if c not in ds.column_names]
        if missing:
            raise GlueDataError(
                f"{dataset_name}/{task.name} split {split!r} lacks column(s) {missing} (found {ds.column_names})"
            )
        names = getattr(ds.features["label"], "names", None)
        if not task.is_regression and names is not None and list(names) != list(task.label_names or ()):
            raise GlueDataError(
                f"{dataset_name}/{task.name} labels {names} differ from GLUE's {list(task.label_names or ())}"
            )
        out[split] = ds
    source = {
        "origin": "hub",
        "dataset": dataset_name,
        "config_name": task.name,
        "revision": revision,
        "rows": {split: len(ds) for split, ds in out.items()},
    }
    return GlueData(task, out, source)


def load_glue(
    task: str | GlueTask,
    data_dir: str | os.PathLike | None = None,
    *,
    splits: Sequence[str] | None = None,
    dataset_name: str = HUB_DATASET,
    cache_dir: str | None = None,
    revision: str | None = None,
) -> GlueData:
    """Load ``task``'s ``splits`` (default: ``train`` and the task's evaluation splits).

    With ``data_dir``, read the task's original TSV files from that folder (``train.tsv``, ``dev.tsv``; MNLI's
    ``dev_matched.tsv`` / ``dev_mismatched.tsv``); otherwise load ``dataset_name`` from the Hub.
    """
    task = get_task(task)
    splits = list(splits) if splits is not None else ["train", *task.eval_splits]
    unknown = [s for s in splits if s not in task.tsv.files]
    if unknown:
        raise ValueError(f"{task.name} has no split(s) {unknown}; known: {list(task.tsv.files)}")
    if data_dir is not None:
        return _load_tsv(task, Path(data_dir).expanduser(), splits)
    return _load_hub(task, dataset_name, splits, cache_dir, revision)
