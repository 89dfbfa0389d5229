"""The GLUE tasks: their columns, label names, metrics, evaluation splits and original TSV layouts.

Column names and label ids are those of the Hub dataset ``nyu-mll/glue``, so a model trained from the original
TSV files and one trained from the Hub agree on what label ``1`` means. The TSV layouts are those of the files
distributed by the GLUE benchmark (``<TASK>/train.tsv``, ``<TASK>/dev.tsv``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["GLUE_TASKS", "GlueTask", "TsvLayout", "get_task", "task_names"]


@dataclass(frozen=True)
class TsvLayout:
    """Where a task's fields sit in GLUE's original TSV files.

    With ``header=True`` the fields are named by the file's first line; without a header (CoLA) they are column
    indices. ``label_values`` maps the label as written in the file to its id; ``None`` means a float score.
    """

    header: bool
    text_fields: tuple[str | int, ...]
    label_field: str | int
    label_values: Mapping[str, int] | None
    files: Mapping[str, str]
    """Split name (as on the Hub) -> file name inside the task's folder."""


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task as the recipe sees it."""

    name: str
    """Configuration name of ``nyu-mll/glue`` (``"mrpc"``, ``"sst2"``, ...)."""
    folder: str
    """Folder name in GLUE's original distribution (``"MRPC"``, ``"SST-2"``, ...)."""
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...] | None
    """Class names by label id; ``None`` for the regression task STS-B."""
    metrics: tuple[str, ...]
    """What GLUE reports for the task, as returned by :mod:`hf_squareloss.glue.metrics`."""
    main_metric: str
    """The validation metric for early stopping and model selection."""
    eval_splits: tuple[str, ...]
    """Hub split names evaluated, the first being the one used for model selection."""
    tsv: TsvLayout
    aliases: tuple[str, ...] = field(default=())

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names or ()))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names or ())}

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2


def _binary(zero: str = "0", one: str = "1") -> dict[str, int]:
    return {zero: 0, one: 1}


_DEV = {"train": "train.tsv", "validation": "dev.tsv"}

GLUE_TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask(
            name="cola",
            folder="CoLA",
            text_columns=("sentence",),
            label_names=("unacceptable", "acceptable"),
            metrics=("matthews_correlation",),
            main_metric="matthews_correlation",
            eval_splits=("validation",),
            # no header: source code, label, original judgement, sentence
            tsv=TsvLayout(header=False, text_fields=(3,), label_field=1, label_values=_binary(), files=_DEV),
        ),
        GlueTask(
            name="sst2",
            folder="SST-2",
            text_columns=("sentence",),
            label_names=("negative", "positive"),
            metrics=("accuracy",),
            main_metric="accuracy",
            eval_splits=("validation",),
            tsv=TsvLayout(
                header=True,
                text_fields=("sentence",),
                label_field="label",
                label_values=_binary(),
                files=_DEV,
            ),
            aliases=("sst-2",),
        ),
        GlueTask(
            name="mrpc",
            folder="MRPC",
            text_columns=("sentence1", "sentence2"),
            label_names=("not_equivalent", "equivalent"),
            metrics=("accuracy", "f1"),
            main_metric="accuracy",
            eval_splits=("validation",),
            tsv=TsvLayout(
                header=True,
                text_fields=("#1 String", "#2 String"),
                label_field="Quality",
                label_values=_binary(),
                files=_DEV,
            ),
        ),
        GlueTask(
            name="qqp",
            folder="QQP",
            text_columns=("question1", "question2"),
            label_names=("not_duplicate", "duplicate"),
            metrics=("accuracy", "f1"),
            main_metric="accuracy",
            eval_splits=("validation",),
            tsv=TsvLayout(
                header=True,
                text_fields=("question1", "question2"),
                label_field="is_duplicate",
                label_values=_binary(),
                files=_DEV,
            ),
        ),
        GlueTask(
            name="stsb",
            folder="STS-B",
            text_columns=("sentence1", "sentence2"),
            label_names=None,
            metrics=("pearson", "spearmanr"),
            main_metric="pearson",
            eval_splits=("validation",),
            tsv=TsvLayout(
                header=True,
                text_fields=("sentence1", "sentence2"),
                label_field="score",
                label_values=None,
                files=_DEV,
            ),
            aliases=("sts-b",),
        ),
        GlueTask(
            name="mnli",
            folder="MNLI",
            text_columns=("premise", "hypothesis"),
            label_names=("entailment", "neutral", "contradiction"),
            metrics=("accuracy",),
            main_metric="accuracy",
            eval_splits=("validation_matched", "validation_mismatched"),
            tsv=TsvLayout(
                header=True,
                text_fields=("sentence1", "sentence2"),
                label_field="gold_label",
                label_values={"entailment": 0, "neutral": 1, "contradiction": 2},
                files={
                    "train": "train.tsv",
                    "validation_matched": "dev_matched.tsv",
                    "validation_mismatched": "dev_mismatched.tsv",
                },
            ),
        ),
        GlueTask(
            name="qnli",
            folder="QNLI",
            text_columns=("question", "sentence"),
            label_names=("entailment", "not_entailment"),
            metrics=("accuracy",),
            main_metric="accuracy",
            eval_splits=("validation",),
            tsv=TsvLayout(
                header=True,
                text_fields=("question", "sentence"),
                label_field="label",
                label_values={"entailment": 0, "not_entailment": 1},
                files=_DEV,
            ),
        ),
        GlueTask(
            name="rte",
            folder="RTE",
            text_columns=("sentence1", "sentence2"),
            label_names=("entailment", "not_entailment"),
            metrics=("accuracy",),
            main_metric="accuracy",
            eval_splits=("validation",),
            tsv=TsvLayout(
                header=True,
                text_fields=("sentence1", "sentence2"),
                label_field="label",
                label_values={"entailment": 0, "not_entailment": 1},
                files=_DEV,
            ),
        ),
        GlueTask(
            name="wnli",
            folder="WNLI",
            text_columns=("sentence1", "sentence2"),
            label_names=("not_entailment", "entailment"),
            metrics=("accuracy",),
            main_metric="accuracy",
            eval_splits=("validation",),
            tsv=TsvLayout(
                header=True,
                text_fields=("sentence1", "sentence2"),
                label_field="label",
                label_values=_binary(),
                files=_DEV,
            ),
        ),
    )
}


def task_names() -> list[str]:
    """The configuration names of the known tasks."""
    return list(GLUE_TASKS)


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


_BY_KEY: dict[str, GlueTask] = {}
for _task in GLUE_TASKS.values():
    for _alias in (_task.name, _task.folder, *_task.aliases):
        _BY_KEY[_key(_alias)] = _task


def get_task(name: str | GlueTask) -> GlueTask:
    """The task called ``name`` (``"MRPC"``, ``"mrpc"``, ``"SST-2"``, ``"sst2"`` ...); ``ValueError`` when unknown."""
    if isinstance(name, GlueTask):
        return name
    task = _BY_KEY.get(_key(str(name))) if name else None
    if task is None:
        raise ValueError(f"unknown GLUE task {name!r}; choose one of {task_names()}")
    return task
