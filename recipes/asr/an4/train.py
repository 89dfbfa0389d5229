#!/usr/bin/env python3
"""AN4 (CMU Census) joint CTC-attention recipe: the decoder loss is any registered loss (``--loss_type``).

    python train.py hparams/an4.yaml --loss_type square
    python train.py hparams/an4.yaml --loss_type ce --seed 2 --number_of_epochs 5
    torchrun --nproc_per_node 2 train.py hparams/an4.yaml      # DDP (gloo on CPU, nccl on GPUs)

The data are read from ``--data_folder`` or, when it is null, from ``$HF_SQUARELOSS_DATA/an4``. Results go to
``<output_folder>/results.json`` (see ``README.md``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from an4_prepare import ALPHABET, prepare_an4

from hf_squareloss.shared_data import shared_dir
from hf_squareloss.speechbrain.recipe import run_recipe
from hf_squareloss.speechbrain.units import UnitTokenizer


def prepare_kwargs(hparams: Mapping[str, Any]) -> dict[str, Any]:
    data_folder = hparams["data_folder"] or shared_dir("data") / "an4"
    return {
        "data_folder": data_folder,
        "save_folder": hparams["manifest_folder"],
        "valid_speakers_per_gender": hparams["valid_speakers_per_gender"],
        "seed": hparams["split_seed"],
    }


def make_tokenizer(hparams: Mapping[str, Any], manifests: Mapping[str, Path]) -> UnitTokenizer:
    tokenizer = UnitTokenizer.characters(ALPHABET)
    tokenizer.save(Path(hparams["save_folder"]) / "units.txt")
    return tokenizer


def main(argv: Sequence[str]) -> dict[str, Any]:
    return run_recipe(argv, prepare=prepare_an4, prepare_kwargs=prepare_kwargs, make_tokenizer=make_tokenizer)


if __name__ == "__main__":
    main(sys.argv[1:])
