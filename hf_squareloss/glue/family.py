"""The GLUE tasks as a task family: what the sweep, its reports and ``hf-squareloss card`` ask about them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..model_card import ModelCardInfo
from ..runs.families import CardMetadata, SweepArgv, TaskFamily
from .tasks import get_task

__all__ = ["FAMILY", "GlueFamily"]


class GlueFamily(TaskFamily):
    """GLUE's classification tasks (``mrpc``, ``sst2``...), run by :mod:`hf_squareloss.glue.run`."""

    name = "glue"
    recipe_module = "hf_squareloss.glue.run"
    run_kind = "glue_run"
    description = "GLUE tasks"
    sweep_flags = ("--data_dir",)

    def canonical_task(self, task: str) -> str:
        return get_task(task).name

    def sweep_task(self, task: str) -> str:
        name = self.canonical_task(task)
        if get_task(name).is_regression:
            raise ValueError(f"{name} is a regression task; the comparison covers classification tasks")
        return name

    def metric_names(self, task: str) -> list[str]:
        """GLUE's metrics of the task; MNLI adds those of its mismatched split (``accuracy_mm``)."""
        spec = get_task(task)
        names = list(spec.metrics)
        if len(spec.eval_splits) > 1:
            names += [f"{m}_mm" for m in spec.metrics]
        return names

    def main_metric(self, task: str) -> str:
        return get_task(task).main_metric

    def sweep_argv(self, task: str, model_name_or_path: str, data_root: str | None) -> SweepArgv:
        """The model and the task; with ``data_root``, the task's folder of GLUE's original TSV files in it."""
        data = [] if data_root is None else ["--data_dir", str(Path(data_root) / get_task(task).folder)]
        return SweepArgv(head=["--model_name_or_path", model_name_or_path, "--task_name", task], data=data)

    def setup_line(
        self, task: str, row: Mapping[str, Any], run_args: Mapping[str, Any], dataset: Mapping[str, Any]
    ) -> str:
        training, data = run_args["training"], run_args["data"]
        resolved = run_args["protocol"].get("resolved", {})
        precision = (
            "bf16 mixed precision" if training.get("bf16") else ("fp16" if training.get("fp16") else "fp32")
        )
        source = "local TSV files" if data.get("data_dir") else "Hub dataset " + data.get("dataset_name", "")
        return (
            f"model `{Path(run_args['model']['model_name_or_path']).name}`, "
            f"{row['num_train_examples']:,} training / {row['num_eval_examples']:,} validation examples "
            f"({source}), max_seq_length {data['max_seq_length']}, at most {training['num_train_epochs']:g} epochs, "
            f"early-stopping patience {resolved.get('patience', '–')} on validation "
            f"{resolved.get('metric_for_best_model')}, batch {training['per_device_train_batch_size']} x "
            f"{training['gradient_accumulation_steps']}, learning rate {training['learning_rate']:g} "
            f"({training['lr_scheduler_type']}, warm-up {training['warmup_steps']:g}), weight decay "
            f"{training['weight_decay']:g}, {precision}."
        )

    def report_subject(self, tasks: Sequence[str]) -> str:
        return f"GLUE ({', '.join(tasks)})"

    def card_metadata(self, tasks: Sequence[str]) -> CardMetadata:
        return CardMetadata(
            tags=("glue", *tasks, "text-classification"),
            datasets=("nyu-mll/glue",),
            pipeline_tag="text-classification",
            language="en",
        )

    def card_info(self, run_dir: str | Path, *, base_model: str | None = None) -> ModelCardInfo:
        from .card import card_info_from_run

        return card_info_from_run(run_dir, base_model=base_model)


FAMILY = GlueFamily()
