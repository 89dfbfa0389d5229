"""Which model card a folder gets: ``hf-squareloss card FOLDER``.

A folder says what it is: a GLUE run by its ``run_summary.json``, an ASR run and a sweep report by the ``kind`` of
their ``results.json``, a sweep by its ``sweep.json``. (Folders written before ``results.json`` carried a kind are
recognised by its entries.) Each kind's card is built beside its data: :mod:`hf_squareloss.glue.card`,
:mod:`hf_squareloss.speechbrain.card`, :mod:`hf_squareloss.compare.card`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["card_text", "folder_kind", "write_card"]


def folder_kind(folder: str | os.PathLike) -> str:
    """``"glue_run"``, ``"image_run"``, ``"asr_run"`` or ``"sweep"``; ``ValueError`` for any other folder."""
    from .compare.card import is_sweep_folder
    from .glue.outputs import SUMMARY_FILE
    from .speechbrain.card import is_asr_run

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    from .vision.card import is_image_run

    if is_image_run(folder):
        return "image_run"
    if (folder / SUMMARY_FILE).is_file():
        return "glue_run"
    if is_asr_run(folder):
        return "asr_run"
    if is_sweep_folder(folder):
        return "sweep"
    raise ValueError(
        f"{folder} is neither a finished run folder (a GLUE run has {SUMMARY_FILE}, an ASR run a results.json of "
        "kind asr_run) nor a sweep folder (sweep.json, or the results.json of its report)"
    )


def card_text(folder: str | os.PathLike, *, base_model: str | None = None) -> str:
    """The card of a finished GLUE or ASR run folder, or of a comparison sweep (or its report) folder."""
    from .model_card import render_model_card

    kind = folder_kind(folder)
    if kind == "glue_run":
        from .glue.card import card_info_from_run

        return render_model_card(card_info_from_run(folder, base_model=base_model))
    if kind == "image_run":
        from .vision.card import image_card_info

        return render_model_card(image_card_info(folder, base_model=base_model))
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
