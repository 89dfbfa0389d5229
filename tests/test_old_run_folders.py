"""Folders written before the shared run runtime (``tests/fixtures/old_run_folders``, see its README) resume and
report with today's code as they did: each sweep plans the very commands it stored and keeps its finished runs,
every run would record the arguments it recorded (so an interrupted one passes the resume check), the reports are
the same but for their title, and ``hf-squareloss card`` still knows each folder."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
import sys
from pathlib import Path

import pytest

from hf_squareloss.compare.aggregate import CALIBRATION_COLUMNS
from hf_squareloss.compare.grid import SweepSpec
from hf_squareloss.compare.report import write_report
from hf_squareloss.compare.runner import run_sweep
from hf_squareloss.folder_card import card_text, folder_kind
from hf_squareloss.glue.run import GlueRun
from hf_squareloss.runs.families import family_of
from hf_squareloss.runs.folder import RUN_ARGS_FILE, read_json
from hf_squareloss.runs.records import check_resumable
from hf_squareloss.runs.skeleton import run_args_of
from hf_squareloss.vision.run import ImageRun

FIXTURE = Path(__file__).parent / "fixtures" / "old_run_folders"
SWEEPS = {
    "sweep-glue": "# Loss comparison on GLUE (mrpc)",
    "sweep-vision": "# Loss comparison on vision:digits",
}
RECIPES = {"glue": GlueRun, "vision": ImageRun}


@pytest.fixture
def old(tmp_path: Path) -> Path:
    """The fixture folders with their paths put back, and the model and image folders their commands name."""
    root = tmp_path.resolve() / "old"
    data = tmp_path.resolve() / "data"
    for path in FIXTURE.rglob("*"):
        if not path.is_file() or path == FIXTURE / "README.md":
            continue
        target = root / path.relative_to(FIXTURE)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text(encoding="utf-8").replace("@OLD@", str(root)).replace("@DATA@", str(data))
        target.write_text(text, encoding="utf-8")
    for split in ("train", "validation", "test"):
        (root / "data" / "digits" / split).mkdir(parents=True)
    (root / "tiny-bert").mkdir()
    return root


def _run_folders(root: Path) -> list[Path]:
    return sorted(path.parent for path in root.rglob(RUN_ARGS_FILE))


@pytest.mark.parametrize("sweep", sorted(SWEEPS))
def test_an_old_sweep_plans_the_commands_it_stored_and_keeps_its_runs(old: Path, sweep: str) -> None:
    root = old / sweep
    stored = read_json(root / "sweep.json")["spec"]
    spec = SweepSpec(**stored)
    assert spec.to_dict() == stored
    runs = spec.runs()
    assert len(runs) == len(_run_folders(root)) == {"sweep-glue": 6, "sweep-vision": 5}[sweep]
    for run in runs:
        assert spec.recipe_argv(run, root) == read_json(root / run.relpath / "sweep_run.json")["argv"], (
            run.label
        )
    outcome = run_sweep(spec, root, launcher=f"{sys.executable} -c pass", out=io.StringIO())
    assert outcome.ok and outcome.kept == [run.label for run in runs] and not outcome.finished


def test_every_old_run_would_record_its_arguments_again(old: Path) -> None:
    """Today's record of each stored command equals the stored one (training arguments: on the keys both have, so
    that a field added to the training arguments later does not fail this), and passes the resume check."""
    folders = _run_folders(old)
    assert len(folders) == 6 + 5 + 2
    for folder in folders:
        stored = read_json(folder / RUN_ARGS_FILE)
        recipe = RECIPES[family_of(stored["data"]["task_name"]).name]
        new = run_args_of(recipe, stored["argv"])
        assert {k: v for k, v in new.items() if k != "training"} == {
            k: v for k, v in stored.items() if k != "training"
        }, folder
        shared = stored["training"].keys() & new["training"].keys()
        assert {k: new["training"][k] for k in shared} == {k: stored["training"][k] for k in shared}, folder
        check_resumable(folder, new, recipe.resume_keys)
    changed = copy.deepcopy(new)
    changed["training"]["learning_rate"] *= 2
    with pytest.raises(ValueError, match=r"training\.learning_rate"):
        check_resumable(folder, changed, recipe.resume_keys)


_CONVERGENCE_RUN_KEYS = ("converged", "convergence", "convergence_source")
_CONVERGENCE_CELL_KEYS = ("not_converged", "undecided")
# the calibration on the test split, added to the report after these folders were written; they have none
_TEST_CALIBRATION_KEYS = tuple(name for name in CALIBRATION_COLUMNS if name.startswith("test_"))


def _without_convergence_csv(text: str) -> list[list[str]]:
    """A results.csv without the columns added since: the convergence rule's, the test split's calibration and the
    temperature's status."""
    rows = list(csv.reader(text.splitlines()))
    added = (*_CONVERGENCE_RUN_KEYS, *_TEST_CALIBRATION_KEYS, "temperature_status")
    keep = [i for i, name in enumerate(rows[0]) if name not in added]
    return [[row[i] for i in keep] for row in rows]


def _without_convergence_md(lines: list[str]) -> list[str]:
    """RESULTS.md without what the convergence rule added (the note under each table, the marks in the cells and
    the last column, "converged", of the epochs and per-seed tables), and with the opening sentence as it was
    before it named the test split."""
    out, drop_last = [], False
    for line in lines:
        if (
            line.startswith(("†(k/n)", "Every run converged"))
            or " runs have too short a validation curve" in line
        ):
            continue
        if " finished runs; metrics of the model each run kept (chosen on validation)" in line:
            count, rest = line.split(" finished runs; ", 1)
            line = (
                f"{count} finished runs; validation (dev) metrics of the model each run kept."
                + rest.split(".", 1)[1]
            )
        if line.startswith("Mean over seeds of the epoch"):
            line = "Mean over seeds of the epoch whose model was kept and of the epochs run."
        if line.startswith("|"):
            drop_last = drop_last or line.endswith(" converged |")
            if drop_last:
                line = line[: line[:-1].rstrip().rfind("|") + 1]
        else:
            drop_last = False
        out.append(re.sub(r" †\(\d+/\d+\)", "", line))
    return out


@pytest.mark.parametrize("sweep", sorted(SWEEPS))
def test_an_old_sweep_is_reported_as_before_but_for_the_title_and_convergence(
    old: Path, tmp_path: Path, sweep: str
) -> None:
    root = old / sweep
    report = tmp_path / "report"
    write_report(root, report)
    new_csv = _without_convergence_csv((report / "results.csv").read_text(encoding="utf-8"))
    assert new_csv == _without_convergence_csv((root / "results.csv").read_text(encoding="utf-8"))
    summary_csv = (report / "summary.csv").read_text(encoding="utf-8")
    assert summary_csv == (root / "summary.csv").read_text(encoding="utf-8")
    new = json.loads((report / "results.json").read_text())
    for run in new["runs"]:  # old summaries carry no verdict: it is recomputed from their history
        assert run["convergence_source"] == "history" and run["converged"] in (True, False, None)
        for key in _CONVERGENCE_RUN_KEYS:
            run.pop(key)
        for key in _TEST_CALIBRATION_KEYS:
            assert run.pop(key) is None
        assert run.pop("temperature_status") in (None, "fitted")
    for cell in new["summary"]:
        for key in _CONVERGENCE_CELL_KEYS:
            cell.pop(key)
        assert cell.pop("temperature_not_fitted") == 0
        for key in _TEST_CALIBRATION_KEYS:
            assert cell["calibration"].pop(key)["n"] == 0
        for entry in cell["metrics"].values():  # every metric of these tasks is higher-is-better
            assert entry.pop("greater_is_better") is True
    assert new == json.loads((root / "results.json").read_text())
    before = (root / "RESULTS.md").read_text(encoding="utf-8").splitlines()
    after = (report / "RESULTS.md").read_text(encoding="utf-8").splitlines()
    assert before[0] == "# Loss comparison on GLUE"  # what every report was titled
    assert after[0] == SWEEPS[sweep]
    assert [line for line in _without_convergence_md(after[1:]) if line] == [
        line for line in before[1:] if line
    ]


def test_old_folders_are_known_to_the_card_command(old: Path) -> None:
    assert {folder_kind(folder) for folder in _run_folders(old / "sweep-glue")} == {"glue_run"}
    assert {folder_kind(folder) for folder in _run_folders(old / "sweep-vision")} == {"image_run"}
    assert folder_kind(old / "sweep-glue") == folder_kind(old / "sweep-vision") == "sweep"
    glue_card = card_text(old / "sweep-glue/mrpc/early_stopping/ce/noise0.4/seed0")
    image_card = card_text(old / "sweep-vision/vision-digits/tce_paper/square/noise0.4/seed0")
    assert "pipeline_tag: text-classification" in glue_card and "GLUE MRPC" in glue_card
    assert "pipeline_tag: image-classification" in image_card and "split: test" in image_card
