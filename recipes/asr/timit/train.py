#!/usr/bin/env python3
"""TIMIT phone-recognition joint CTC-attention recipe: the decoder loss is any registered loss (``--loss_type``).

    python train.py hparams/timit.yaml --data_folder /path/to/TIMIT --loss_type square
    torchrun --nproc_per_node 2 train.py hparams/timit.yaml --data_folder /path/to/TIMIT

The 61 phones are folded to 39 before training (42 outputs with blank, bos and eos); the phone error rate is in
``<output_folder>/results.json`` as ``test_per`` (core test) and ``valid_per`` (development set).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timit_prepare import PHONES_39, prepare_timit

from hf_squareloss.speechbrain.recipe import run_recipe
from hf_squareloss.speechbrain.units import UnitTokenizer


def prepare_kwargs(hparams: Mapping[str, Any]) -> dict[str, Any]:
    return {"data_folder": hparams["data_folder"], "save_folder": hparams["manifest_folder"]}


def make_tokenizer(hparams: Mapping[str, Any], manifests: Mapping[str, Path]) -> UnitTokenizer:
    tokenizer = UnitTokenizer(PHONES_39, "symbol")
    tokenizer.save(Path(hparams["save_folder"]) / "units.txt")
    return tokenizer


def main(argv: Sequence[str]) -> dict[str, Any]:
    return run_recipe(
        argv,
        prepare=prepare_timit,
        prepare_kwargs=prepare_kwargs,
        make_tokenizer=make_tokenizer,
        error_rate_name="PER",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
