"""The table of task families: tasks go to their family, the vision: prefix is written once, nothing in the sweep
tests task names, and a third family joins the sweep, its report and ``hf-squareloss card`` with one table entry."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from hf_squareloss.compare.grid import RunSpec, SweepSpec
from hf_squareloss.compare.report import write_report
from hf_squareloss.folder_card import card_text, folder_kind
from hf_squareloss.registry import LossConfig
from hf_squareloss.runs import families
from hf_squareloss.runs.families import FAMILY_TABLE, FamilyEntry, describe_tasks, family_named, family_of

PACKAGE = Path(__file__).resolve().parents[1] / "hf_squareloss"


@pytest.fixture
def toy(monkeypatch) -> None:
    """The toy family (``tests/toy_family.py``) in the table, for one test."""
    monkeypatch.setitem(FAMILY_TABLE, "toy", FamilyEntry(prefix="toy:", module="toy_family"))


def test_each_task_goes_to_its_family() -> None:
    glue, vision = family_of("mrpc"), family_of("vision:cifar10")
    assert (glue.name, glue.recipe_module, glue.run_kind) == ("glue", "hf_squareloss.glue.run", "glue_run")
    assert (vision.name, vision.recipe_module, vision.run_kind) == (
        "vision",
        "hf_squareloss.vision.run",
        "image_run",
    )
    assert family_of("SST-2").canonical_task("SST-2") == "sst2" and vision.prefix == "vision:"
    assert glue.metric_names("mnli") == ["accuracy", "accuracy_mm"] and glue.main_metric("mrpc") == "accuracy"
    assert vision.metric_names("vision:svhn") == ["test_accuracy", "accuracy"]
    assert vision.history_metric("vision:svhn") == "accuracy"
    assert describe_tasks(["mrpc", "vision:digits", "sst2"]) == "GLUE (mrpc, sst2) and vision:digits"
    with pytest.raises(ValueError, match="unknown GLUE task 'squad'"):
        family_of("squad").canonical_task("squad")


def _string_constants(path: Path) -> list[tuple[str, int]]:
    return [
        (node.value, node.lineno)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_the_vision_prefix_is_written_once() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{line}"
        for path in PACKAGE.rglob("*.py")
        for value, line in _string_constants(path)
        if value == "vision:"
    ]
    assert found == [f"runs/families.py:{_line_of('runs/families.py', 'vision:')}"]


def _line_of(module: str, value: str) -> int:
    return next(line for v, line in _string_constants(PACKAGE / module) if v == value)


def test_the_sweep_and_the_card_command_name_no_task_nor_recipe() -> None:
    """What only a family knows: its task names, its prefix, its recipe module. (The table names each family and its
    module; ``compare/paper.py`` holds published numbers under the tasks they were published for.)"""
    names = {
        "vision:",
        "stsb",
        "mrpc",
        "glue",
        "vision",
        "hf_squareloss.glue.run",
        "hf_squareloss.vision.run",
    }
    shared = [
        *(PACKAGE / "compare").glob("*.py"),
        PACKAGE / "folder_card.py",
        *(PACKAGE / "runs").glob("*.py"),
    ]
    found = [
        f"{path.relative_to(PACKAGE)}:{line} {value!r}"
        for path in shared
        if path.name not in ("families.py", "paper.py")
        for value, line in _string_constants(path)
        if value in names
    ]
    assert found == []


def test_the_table_refuses_taken_names_and_prefixes_and_unknown_families(monkeypatch) -> None:
    monkeypatch.setattr(families, "FAMILY_TABLE", dict(FAMILY_TABLE))
    with pytest.raises(ValueError, match="'glue' is empty or taken"):
        families.register_family("glue", "glue:", "x")
    with pytest.raises(ValueError, match="task prefix 'vision:' is the vision family's"):
        families.register_family("images", "vision:", "x")
    families.register_family("helpers", "helper:", "vision_data")  # a module without FAMILY
    with pytest.raises(ValueError, match=r"vision_data\.FAMILY is not a TaskFamily named 'helpers'"):
        family_of("helper:x")
    with pytest.raises(ValueError, match="no task family 'audio'"):
        family_named("audio")


def test_a_third_family_joins_with_one_table_entry(toy, tmp_path: Path) -> None:
    spec = SweepSpec(
        model_name_or_path="m", tasks=["toy:a", "mrpc"], losses=["ce", "square"], seeds=[0], noise_rates=[0.0]
    )
    run = spec.runs()[0]
    assert run == RunSpec("toy:a", "early_stopping", "ce", 0.0, 0) and run.module == "toy_recipe"
    argv = spec.recipe_argv(run, tmp_path)
    assert (
        argv[:4] == ["--toy_model", "m", "--task_name", "toy:a"] and argv[argv.index("--toy_data") + 1] == "x"
    )
    assert spec.runs()[2].module == "hf_squareloss.glue.run"
    with pytest.raises(ValueError, match="--toy_data is set by the sweep"):
        SweepSpec(model_name_or_path="m", tasks=["mrpc"], recipe_args=["--toy_data", "y"])
    with pytest.raises(ValueError, match="the tce_paper protocol is for image tasks"):
        SweepSpec(model_name_or_path="m", tasks=["toy:a"], protocols=["tce_paper"])

    root = tmp_path / "sweep"
    loss = {**LossConfig.resolve("ce", num_classes=2).to_dict(), "num_classes": 2}
    for seed, score in enumerate((0.4, 0.6)):
        folder = root / RunSpec("toy:a", "early_stopping", "ce", 0.0, seed).relpath
        folder.mkdir(parents=True)
        summary = {
            "task": "toy:a", "protocol": {"name": "early_stopping"}, "loss": loss, "seed": seed,
            "eval_metrics": {"eval_toy_score": score}, "history": [], "num_train_examples": 7,
        }  # fmt: skip
        (folder / "run_summary.json").write_text(json.dumps(summary))
        (folder / "run_args.json").write_text(
            json.dumps({"model": {}, "data": {}, "protocol": {}, "training": {}})
        )
    write_report(root)
    report = (root / "RESULTS.md").read_text()
    assert report.startswith("# Loss comparison on toys (toy:a)\n")
    assert (
        "- **toy:a**: 7 toy examples." in report
        and "**toy:a, early stopping: validation toy score (%)**" in report
    )
    assert "| ce | 50.00 ± 14.14 |" in report
    assert folder_kind(folder) == "toy_run"
    assert "Toy score" in card_text(folder)


def test_a_loss_is_better_by_a_lower_error_where_the_family_says_lower_is_better(toy, tmp_path: Path) -> None:
    """``toy_error`` is lower-is-better: the seeds where ``square`` has the lower error are the ones it won."""
    root = tmp_path / "sweep"
    # seed -> (toy_score, toy_error) for ce, then square: square scores higher in seed 0 only, errs less in 0 and 1
    runs = {"ce": [(0.5, 0.30), (0.6, 0.20), (0.7, 0.10)], "square": [(0.6, 0.25), (0.5, 0.15), (0.6, 0.40)]}
    for loss_type, values in runs.items():
        loss = {**LossConfig.resolve(loss_type, num_classes=2).to_dict(), "num_classes": 2}
        for seed, (score, error) in enumerate(values):
            folder = root / RunSpec("toy:a", "early_stopping", loss_type, 0.0, seed).relpath
            folder.mkdir(parents=True)
            summary = {
                "task": "toy:a", "protocol": {"name": "early_stopping"}, "loss": loss, "seed": seed,
                "eval_metrics": {"eval_toy_score": score, "eval_toy_error": error}, "history": [],
                "num_train_examples": 7,
            }  # fmt: skip
            (folder / "run_summary.json").write_text(json.dumps(summary))
            (folder / "run_args.json").write_text(
                json.dumps({"model": {}, "data": {}, "protocol": {}, "training": {}})
            )
    write_report(root)
    cells = json.loads((root / "results.json").read_text())["summary"]
    square = next(c for c in cells if c["loss_type"] == "square")["metrics"]
    assert square["toy_score"]["wins_vs_ce"] == 1 and square["toy_score"]["greater_is_better"] is True
    assert square["toy_error"]["wins_vs_ce"] == 2 and square["toy_error"]["greater_is_better"] is False
    assert square["toy_error"]["paired_delta"]["mean"] == pytest.approx((-0.05 - 0.05 + 0.30) / 3)
    report = (root / "RESULTS.md").read_text()
    assert "better in 1/3" in report and "better in 2/3" in report
