"""The recipe's data: load a task, take the subsets, corrupt the training labels, tokenize.

:func:`prepare_data` also returns what the run folder records about the data (``dataset.json``) and the noise
(``label_noise.json``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from ..noise import add_label_noise
from ..runs.arguments import LabelNoiseArguments
from .arguments import DataTrainingArguments
from .data import load_glue
from .tasks import GlueTask

__all__ = ["prepare_data", "tokenize"]

logger = logging.getLogger(__name__)


def _label_noise_record(
    report: Any, noise_args: LabelNoiseArguments, train_ids: np.ndarray
) -> dict[str, Any]:
    record = report.to_dict()
    record["split"] = "train"
    record["flipped_idx"] = train_ids[np.asarray(report.flipped_indices, dtype=np.int64)].tolist()
    record["settings"] = dataclasses.asdict(noise_args)
    return record


def prepare_data(
    task: GlueTask,
    data_args: DataTrainingArguments,
    noise_args: LabelNoiseArguments,
    *,
    do_train: bool = True,
    do_eval: bool = True,
    cache_dir: str | None = None,
) -> tuple[Any, dict[str, Any] | None, dict[str, Any]]:
    """Load the splits, take the subsets, corrupt the training labels (only them).

    Returns ``(splits, label_noise_record or None, dataset_record)``: a ``DatasetDict`` with ``train`` (when
    ``do_train``) and the task's evaluation splits (when ``do_eval``), and what ``label_noise.json`` and
    ``dataset.json`` hold.
    """
    splits = (["train"] if do_train else []) + (list(task.eval_splits) if do_eval else [])
    data = load_glue(
        task,
        data_args.data_dir,
        splits=splits,
        dataset_name=data_args.dataset_name,
        cache_dir=cache_dir,
        revision=data_args.dataset_revision,
    )
    raw = data.splits
    noise_record: dict[str, Any] | None = None
    if do_train:
        train = raw["train"]
        if data_args.max_train_samples is not None:
            train = train.select(range(min(len(train), data_args.max_train_samples)))
        if noise_args.active:
            train, report = add_label_noise(
                train,
                noise_args.label_noise,
                noise_type=noise_args.label_noise_type,
                seed=noise_args.noise_seed,
                exact=noise_args.label_noise_exact,
                num_classes=task.num_labels,
            )
            noise_record = _label_noise_record(report, noise_args, np.asarray(train["idx"]))
            logger.info(
                "label noise: %s, rate %g, realised %.4f (%d of %d training labels changed)",
                report.noise_type,
                report.rate,
                report.realised_rate,
                report.num_flipped,
                report.num_examples,
            )
        raw["train"] = train
    for split in task.eval_splits if do_eval else ():
        if data_args.max_eval_samples is not None:
            raw[split] = raw[split].select(range(min(len(raw[split]), data_args.max_eval_samples)))
    dataset_record = {
        "task": task.name,
        "glue_folder": task.folder,
        **data.source,
        "splits_used": {split: len(ds) for split, ds in raw.items()},
        "eval_split": task.eval_splits[0] if do_eval else None,
        "eval_splits": list(task.eval_splits) if do_eval else [],
        "label_names": list(task.label_names or ()),
        "label_counts": {split: _label_counts(ds, task) for split, ds in raw.items()},
        "label_noise": noise_record is not None,
    }
    return raw, noise_record, dataset_record


def _label_counts(dataset: Any, task: GlueTask) -> dict[str, int]:
    """How many examples carry each label (the training labels after noise); the majority baseline follows."""
    names = task.label_names or ()
    counts = np.bincount(np.asarray(dataset["label"], dtype=np.int64), minlength=len(names))
    return {name: int(counts[i]) for i, name in enumerate(names)}


def tokenize(
    dataset: Any, task: GlueTask, tokenizer: Any, data_args: DataTrainingArguments, desc: str
) -> Any:
    max_length = min(
        data_args.max_seq_length, getattr(tokenizer, "model_max_length", data_args.max_seq_length)
    )
    padding = "max_length" if data_args.pad_to_max_length else False

    def encode(batch: dict[str, list]) -> Any:
        texts = [batch[c] for c in task.text_columns]
        return tokenizer(*texts, padding=padding, max_length=max_length, truncation=True)

    return dataset.map(
        encode,
        batched=True,
        num_proc=data_args.preprocessing_num_workers,
        load_from_cache_file=not data_args.overwrite_cache,
        remove_columns=list(task.text_columns),
        desc=desc,
    )
