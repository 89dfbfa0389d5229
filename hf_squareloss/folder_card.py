"""Which model card a folder gets: ``hf-squareloss card FOLDER``.

A folder says what it is: a recipe run by its ``run_summary.json``, whose task names the task family (GLUE, images:
:mod:`hf_squareloss.runs.families`), an ASR run and a sweep report by the ``kind`` of their ``results.json``, a
sweep by its ``sweep.json``. (Folders written before ``results.json`` carried a kind are recognised by its
entries.) Each kind's card is built beside its data: by the task family of a recipe run (``hf_squareloss.glue.card``,
``hf_squareloss.vision.card``), :mod:`hf_squareloss.speechbrain.card`, :mod:`hf_squareloss.compare.card`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

__all__ = ["card_text", "folder_kind", "write_card"]

if TYPE_CHECKING:
    from .runs.families import TaskFamily


def _run_family(folder: Path) -> TaskFamily | None:
    """The task family of the recipe run in ``folder`` (from its ``run_summary.json``), None for another folder."""
    from .runs.families import family_of
    from .runs.folder import SUMMARY_FILE, read_json

    path = folder / SUMMARY_FILE
    if not path.is_file():
        return None
    return family_of(str(read_json(path).get("task", "")))


def folder_kind(folder: str | os.PathLike) -> str:
    """The run kind of a recipe run's family (``"glue_run"``, ``"image_run"``), ``"asr_run"`` or ``"sweep"``;
    ``ValueError`` for any other folder."""
    from .compare.card import is_sweep_folder
    from .runs.folder import SUMMARY_FILE
    from .speechbrain.card import is_asr_run

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    family = _run_family(folder)
    if family is not None:
        return family.run_kind
    if is_asr_run(folder):
        return "asr_run"
    if is_sweep_folder(folder):
        return "sweep"
    raise ValueError(
        f"{folder} is neither a finished run folder (a recipe run has {SUMMARY_FILE}, an ASR run a results.json of "
        "kind asr_run) nor a sweep folder (sweep.json, or the results.json of its report)"
    )


def card_text(folder: str | os.PathLike, *, base_model: str | None = None) -> str:
    """The card of a finished recipe run (GLUE, images) or ASR run folder, or of a comparison sweep (or its
    report) folder."""
    from .model_card import render_model_card

    kind = folder_kind(folder)
    family = _run_family(Path(folder))
    if family is not None:
        return render_model_card(family.card_info(folder, base_model=base_model))
    if kind == "asr_run":
        from .speechbrain.card import card_info_from_asr_run

        return render_model_card(card_info_from_asr_run(folder, base_model=base_model))
    from .compare.card import render_sweep_card

    return render_sweep_card(folder, base_model=base_model)


def write_card(
    folder: str | os.PathLike, *, base_model: str | None = None, output: str | os.PathLike | None = None
) -> Path:
    """Write the card of ``folder`` as ``folder/README.md`` (or as ``output``); return its path."""
    from .model_card import CARD_FILE, save_card

    text = card_text(folder, base_model=base_model)
    target = Path(output) if output is not None else Path(folder) / CARD_FILE
    return save_card(target.parent, text, name=target.name)
