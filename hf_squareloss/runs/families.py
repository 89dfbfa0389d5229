"""The table of task families: which recipe runs a task, and what the sweep, its reports and ``hf-squareloss card``
need to know about it.

A task family (GLUE, images) is a :class:`TaskFamily` that its task package defines as ``FAMILY`` in the module
:data:`FAMILY_TABLE` names. A task belongs to the family whose prefix starts its name (``vision:cifar10``), or to the
family without a prefix (GLUE: ``mrpc``). The table is declarative: a family's module is imported the first time one
of its tasks is asked about, so this module imports no task package and naming a GLUE task never loads the image
recipe. A family defined outside this package joins with :func:`register_family`.
"""

from __future__ import annotations

import functools
import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ..model_card import ModelCardInfo

__all__ = [
    "FAMILY_TABLE",
    "SHARED_SWEEP_PROTOCOLS",
    "CardMetadata",
    "FamilyEntry",
    "SweepArgv",
    "TaskFamily",
    "describe_tasks",
    "families",
    "family_named",
    "family_of",
    "register_family",
]

SHARED_SWEEP_PROTOCOLS = ("early_stopping", "same_epochs")
"""The protocols a sweep runs for a task of any family (``fixed_epochs`` is left to single runs)."""


@dataclass(frozen=True)
class FamilyEntry:
    """Where a family is defined and how its tasks are named."""

    prefix: str
    """Every task name of the family starts with it; ``""`` for the one family of unprefixed names."""
    module: str
    """The module whose ``FAMILY`` is the family's :class:`TaskFamily`."""


FAMILY_TABLE: dict[str, FamilyEntry] = {
    "glue": FamilyEntry(prefix="", module="hf_squareloss.glue.family"),
    "vision": FamilyEntry(prefix="vision:", module="hf_squareloss.vision.family"),
}
"""Family name -> its entry. Adding a family is one line here (or a :func:`register_family` call) and its package."""


@dataclass(frozen=True)
class SweepArgv:
    """A family's part of a sweep run's command line."""

    head: list[str]
    """Model, task and data flags that open the command."""
    data: list[str]
    """Data flags that follow the shared flags (where the GLUE recipe's ``--data_dir`` has always been)."""


@dataclass(frozen=True)
class CardMetadata:
    """What a family adds to the metadata of a sweep's model card."""

    tags: tuple[str, ...]
    datasets: tuple[str, ...] = ()
    pipeline_tag: str | None = None
    language: str | None = None


class TaskFamily(ABC):
    """What the sweep, its reports and ``hf-squareloss card`` need to know about a family of tasks.

    A task package subclasses it once (``FAMILY = GlueFamily()``); the class attributes say what the family is, the
    methods answer for one of its tasks.
    """

    name: ClassVar[str]
    """The family's key in :data:`FAMILY_TABLE`."""
    recipe_module: ClassVar[str]
    """The recipe that runs the family's tasks: ``python -m <recipe_module>``; it has ``parse_args(argv)``."""
    run_kind: ClassVar[str]
    """What ``hf-squareloss card`` calls one of its run folders (``"glue_run"``)."""
    description: ClassVar[str]
    """The family's tasks in a sentence (``"image tasks (vision:<name>)"``)."""
    sweep_protocols: ClassVar[tuple[str, ...]] = SHARED_SWEEP_PROTOCOLS
    """The protocols a sweep may run its tasks with, in the order the sweep runs them."""
    sweep_flags: ClassVar[tuple[str, ...]] = ()
    """Recipe flags the sweep sets for its runs besides the shared ones (so a user may not pass them)."""

    @property
    def prefix(self) -> str:
        """What every task name of the family starts with (from :data:`FAMILY_TABLE`)."""
        return FAMILY_TABLE[self.name].prefix

    @abstractmethod
    def canonical_task(self, task: str) -> str:
        """The task's name as the reports spell it; ``ValueError`` for a name the family does not know."""

    def sweep_task(self, task: str) -> str:
        """:meth:`canonical_task`, with ``ValueError`` for a task that a sweep cannot run."""
        return self.canonical_task(task)

    @abstractmethod
    def metric_names(self, task: str) -> list[str]:
        """The metrics a report shows for the task, the main one first (see :meth:`main_metric`)."""

    @abstractmethod
    def main_metric(self, task: str) -> str:
        """The metric the report's plots compare losses by."""

    def history_metric(self, task: str) -> str:
        """The per-epoch validation metric of the learning curves."""
        return self.main_metric(task)

    def greater_is_better(self, task: str, metric: str) -> bool:
        """Whether a higher value of ``metric`` is better (an accuracy: yes; an error rate: no). The reports count
        the seeds in which a loss did better than ``ce`` by it."""
        return True

    @abstractmethod
    def sweep_argv(self, task: str, model_name_or_path: str, data_root: str | None) -> SweepArgv:
        """The model, task and data flags of a sweep run of ``task`` (data from ``data_root``, or the Hub)."""

    @abstractmethod
    def setup_line(
        self, task: str, row: Mapping[str, Any], run_args: Mapping[str, Any], dataset: Mapping[str, Any]
    ) -> str:
        """The report's line on the setup of ``task``, from one of its runs: its row in the report, its
        ``run_args.json`` and its ``dataset.json`` (``{}`` when missing)."""

    @abstractmethod
    def report_subject(self, tasks: Sequence[str]) -> str:
        """What a report on ``tasks`` (of this family) is about, for its title."""

    @abstractmethod
    def card_metadata(self, tasks: Sequence[str]) -> CardMetadata:
        """Tags, data sets, pipeline and language of a sweep's model card over ``tasks``."""

    @abstractmethod
    def card_info(self, run_dir: str | Path, *, base_model: str | None = None) -> ModelCardInfo:
        """The model card of a finished run folder of the family."""

    def parse_args(self, argv: Sequence[str]) -> tuple[Any, ...]:
        """The recipe's parse of ``argv``: ``ValueError`` (or ``SystemExit`` from argparse) when it refuses them."""
        return importlib.import_module(self.recipe_module).parse_args(list(argv))


def register_family(name: str, prefix: str, module: str) -> None:
    """Add a family to :data:`FAMILY_TABLE`: tasks named ``<prefix>...`` then belong to the ``FAMILY`` of
    ``module``. ``ValueError`` when the name or the prefix is taken."""
    if not name or name in FAMILY_TABLE:
        raise ValueError(f"task family name {name!r} is empty or taken ({sorted(FAMILY_TABLE)})")
    taken = {entry.prefix: key for key, entry in FAMILY_TABLE.items()}
    if prefix in taken:
        raise ValueError(f"task prefix {prefix!r} is the {taken[prefix]} family's")
    FAMILY_TABLE[name] = FamilyEntry(prefix=prefix, module=module)


@functools.cache
def _load(name: str, module: str) -> TaskFamily:
    family = getattr(importlib.import_module(module), "FAMILY", None)
    if not isinstance(family, TaskFamily) or family.name != name:
        raise ValueError(f"task family {name!r}: {module}.FAMILY is not a TaskFamily named {name!r}")
    return family


def family_named(name: str) -> TaskFamily:
    """The family called ``name`` in :data:`FAMILY_TABLE` (its module is imported now); ``ValueError`` if none."""
    if name not in FAMILY_TABLE:
        raise ValueError(f"no task family {name!r}; the families are {sorted(FAMILY_TABLE)}")
    return _load(name, FAMILY_TABLE[name].module)


def family_of(task: str) -> TaskFamily:
    """The family of ``task``: the longest prefix that starts its name, else the family without a prefix."""
    matches = [(len(e.prefix), key) for key, e in FAMILY_TABLE.items() if task.startswith(e.prefix)]
    if not matches:
        raise ValueError(f"no task family takes {task!r}; the families are {sorted(FAMILY_TABLE)}")
    return family_named(max(matches)[1])


def families() -> list[TaskFamily]:
    """Every family of the table, in its order (this imports them all)."""
    return [family_named(name) for name in FAMILY_TABLE]


def describe_tasks(tasks: Sequence[str]) -> str:
    """What a report over ``tasks`` is about: each family's subject, in the order the tasks come
    (``"GLUE (mrpc, sst2)"``, ``"vision:digits"``, ``"GLUE (mrpc) and vision:digits"``)."""
    by_family: dict[str, tuple[TaskFamily, list[str]]] = {}
    for task in tasks:
        family = family_of(task)
        by_family.setdefault(family.name, (family, []))[1].append(task)
    return " and ".join(family.report_subject(members) for family, members in by_family.values())
