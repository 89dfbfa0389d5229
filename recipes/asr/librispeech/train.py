#!/usr/bin/env python3
"""LibriSpeech joint CTC-attention recipe on a locally trained 1,000-unit SentencePiece unigram model.

    python train.py hparams/librispeech.yaml --data_folder /path/to/LibriSpeech --loss_type square
    torchrun --nproc_per_node 8 train.py hparams/librispeech.yaml --data_folder /path/to/LibriSpeech

The tokenizer is trained on the training transcripts by the first run (nothing is downloaded) and saved in
``<tokenizer_folder>``; WER/CER of every test split end up in ``<output_folder>/results.json``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from librispeech_prepare import prepare_librispeech

from hf_squareloss.speechbrain.manifests import read_manifest
from hf_squareloss.speechbrain.recipe import run_recipe
from hf_squareloss.speechbrain.units import SentencePieceTokenizer


def prepare_kwargs(hparams: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "data_folder": hparams["data_folder"],
        "save_folder": hparams["manifest_folder"],
        "train_splits": list(hparams["train_splits"]),
        "valid_split": hparams["valid_split"],
        "test_splits": list(hparams["test_splits"]),
    }


def make_tokenizer(hparams: Mapping[str, Any], manifests: Mapping[str, Path]) -> SentencePieceTokenizer:
    """The unigram model of ``vocab_size`` units, trained on the training transcripts if not there yet."""
    prefix = Path(hparams["tokenizer_folder"]) / f"{hparams['token_type']}{hparams['vocab_size']}"
    if prefix.with_suffix(".model").is_file():
        return SentencePieceTokenizer(prefix.with_suffix(".model"))
    texts = (row["text"] for row in read_manifest(manifests["train"]))
    return SentencePieceTokenizer.train(
        texts, prefix, vocab_size=int(hparams["vocab_size"]), model_type=hparams["token_type"]
    )


def main(argv: Sequence[str]) -> dict[str, Any]:
    return run_recipe(
        argv, prepare=prepare_librispeech, prepare_kwargs=prepare_kwargs, make_tokenizer=make_tokenizer
    )


if __name__ == "__main__":
    main(sys.argv[1:])
