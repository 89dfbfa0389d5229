"""Folders written before the shared run runtime (``tests/fixtures/old_run_folders``, see its README) resume and
report with today's code as they did: each sweep plans the very commands it stored and keeps its finished runs,
every run would record the arguments it recorded (so an interrupted one passes the resume check), the reports are
the same but for their title, and ``hf-squareloss card`` still knows each folder."""

from __future__ import annotations

import copy
import io
import json
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("sweep", sorted(SWEEPS))
def test_an_old_sweep_is_reported_as_before_but_for_the_title(old: Path, tmp_path: Path, sweep: str) -> None:
    root = old / sweep
    report = tmp_path / "report"
    write_report(root, report)
    for name in ("results.csv", "summary.csv"):
        assert (report / name).read_text(encoding="utf-8") == (root / name).read_text(encoding="utf-8"), name
    assert json.loads((report / "results.json").read_text()) == json.loads(
        (root / "results.json").read_text()
    )
    before = (root / "RESULTS.md").read_text(encoding="utf-8").splitlines()
    after = (report / "RESULTS.md").read_text(encoding="utf-8").splitlines()
    assert before[0] == "# Loss comparison on GLUE"  # what every report was titled
    assert after[0] == SWEEPS[sweep]
    assert after[1:] == before[1:]


def test_old_folders_are_known_to_the_card_command(old: Path) -> None:
    assert {folder_kind(folder) for folder in _run_folders(old / "sweep-glue")} == {"glue_run"}
    assert {folder_kind(folder) for folder in _run_folders(old / "sweep-vision")} == {"image_run"}
    assert folder_kind(old / "sweep-glue") == folder_kind(old / "sweep-vision") == "sweep"
    glue_card = card_text(old / "sweep-glue/mrpc/early_stopping/ce/noise0.4/seed0")
    image_card = card_text(old / "sweep-vision/vision-digits/tce_paper/square/noise0.4/seed0")
    assert "pipeline_tag: text-classification" in glue_card and "GLUE MRPC" in glue_card
    assert "pipeline_tag: image-classification" in image_card and "split: test" in image_card
