"""GLUE with the losses of this package: tasks, data loaders (Hub and original TSV files), metrics, the recipe.

The recipe is :func:`hf_squareloss.glue.run.main` (``python -m hf_squareloss.glue.run`` or
``recipes/glue/run_glue.py``); importing this package does not import ``transformers``.
"""

from __future__ import annotations

from .data import HUB_DATASET, GlueData, glue_features, load_glue
from .tasks import GLUE_TASKS, GlueTask, TsvLayout, get_task, task_names
from .tsv import GlueDataError, read_glue_tsv

__all__ = [
    "GLUE_TASKS",
    "HUB_DATASET",
    "GlueData",
    "GlueDataError",
    "GlueTask",
    "TsvLayout",
    "get_task",
    "glue_features",
    "load_glue",
    "read_glue_tsv",
    "task_names",
]
