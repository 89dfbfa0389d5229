#!/usr/bin/env python3
"""WSJ joint CTC-attention recipe on characters (si284 / dev93 / eval92): the decoder loss is any registered loss.

    python train.py hparams/wsj.yaml --data_folder /path/to/wsj --loss_type square
    torchrun --nproc_per_node 4 train.py hparams/wsj.yaml --data_folder /path/to/wsj --sph2pipe /path/to/sph2pipe

The shorten-compressed ``.wv1`` audio is converted once with ``sph2pipe`` (see ``wsj_prepare.py``). eval92 WER and
CER end up in ``<output_folder>/results.json`` as ``test_wer`` and ``test_cer``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wsj_prepare import ALPHABET, prepare_wsj

from hf_squareloss.speechbrain.recipe import run_recipe
from hf_squareloss.speechbrain.units import UnitTokenizer


def prepare_kwargs(hparams: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "data_folder": hparams["data_folder"],
        "save_folder": hparams["manifest_folder"],
        "sph2pipe": hparams.get("sph2pipe"),
    }


def make_tokenizer(hparams: Mapping[str, Any], manifests: Mapping[str, Path]) -> UnitTokenizer:
    tokenizer = UnitTokenizer.characters(ALPHABET)
    tokenizer.save(Path(hparams["save_folder"]) / "units.txt")
    return tokenizer


def main(argv: Sequence[str]) -> dict[str, Any]:
    return run_recipe(argv, prepare=prepare_wsj, prepare_kwargs=prepare_kwargs, make_tokenizer=make_tokenizer)


if __name__ == "__main__":
    main(sys.argv[1:])
