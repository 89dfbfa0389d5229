"""A third task family for the tests, ``toy:<name>``: all that a task package adds to join the sweep, its reports and
``hf-squareloss card``, besides its entry in the table of task families (and its recipe, not needed here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hf_squareloss.model_card import CardMetric, ModelCardInfo
from hf_squareloss.runs.families import CardMetadata, SweepArgv, TaskFamily
from hf_squareloss.runs.folder import read_summary

PREFIX = "toy:"


class ToyFamily(TaskFamily):
    name = "toy"
    recipe_module = "toy_recipe"
    run_kind = "toy_run"
    description = "toy tasks (toy:<name>)"
    sweep_flags = ("--toy_data",)

    def canonical_task(self, task: str) -> str:
        if not task.removeprefix(PREFIX):
            raise ValueError(f"toy tasks are named toy:<name>, got {task!r}")
        return task

    def metric_names(self, task: str) -> list[str]:
        return ["toy_score", "toy_error"]

    def greater_is_better(self, task: str, metric: str) -> bool:
        return metric != "toy_error"

    def main_metric(self, task: str) -> str:
        return "toy_score"

    def sweep_argv(self, task: str, model_name_or_path: str, data_root: str | None) -> SweepArgv:
        return SweepArgv(
            head=["--toy_model", model_name_or_path, "--task_name", task], data=["--toy_data", "x"]
        )

    def setup_line(
        self, task: str, row: Mapping[str, Any], run_args: Mapping[str, Any], dataset: Mapping[str, Any]
    ) -> str:
        return f"{row['num_train_examples']} toy examples."

    def report_subject(self, tasks: Sequence[str]) -> str:
        return f"toys ({', '.join(tasks)})"

    def card_metadata(self, tasks: Sequence[str]) -> CardMetadata:
        return CardMetadata(tags=("toy",), pipeline_tag="text-classification")

    def card_info(self, run_dir: str | Path, *, base_model: str | None = None) -> ModelCardInfo:
        summary = read_summary(run_dir)
        return ModelCardInfo(
            model_name="toy-model",
            loss=summary["loss"],
            dataset_id="me/toys",
            metrics=[CardMetric("eval_toy_score", "accuracy", "Toy score", 0.5, "validation")],
        )


FAMILY = ToyFamily()
