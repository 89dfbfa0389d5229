"""Prepare LibriSpeech (OpenSLR 12) in its openslr layout for the recipe.

Layout read::

    <data_folder>/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac
    <data_folder>/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt    "<utterance-id> TEXT" per line

with ``<split>`` e.g. ``train-clean-100``, ``dev-clean``, ``test-other``. Writes ``train.csv`` (the training splits
together), ``valid.csv`` (the validation split) and one ``<test split>.csv`` per test split. Transcripts are kept as
they are (upper-case words of A-Z and apostrophes); anything else is reported with its file and line.

Usage: ``python librispeech_prepare.py /path/to/LibriSpeech /path/to/save_folder``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hf_squareloss.speechbrain.manifests import (
    audio_duration,
    mark_prepared,
    prepared_manifests,
    write_manifest,
)

__all__ = ["parse_trans", "prepare_librispeech"]

TRAIN_SPLITS = ("train-clean-100", "train-clean-360", "train-other-500")
VALID_SPLIT = "dev-clean"
TEST_SPLITS = ("test-clean", "test-other")

_UTT = re.compile(r"^(?P<spk>\d+)-(?P<chapter>\d+)-(?P<n>\d+)$")
_TEXT = re.compile(r"^[A-Z']+( [A-Z']+)*$")


def parse_trans(path: str | Path) -> list[tuple[str, str]]:
    """``[(utterance id, text)]`` of a ``*.trans.txt`` file; ``ValueError`` naming the file and line of a bad line.

    Every id must be ``<speaker>-<chapter>-<n>`` of this file's speaker and chapter.
    """
    path = Path(path)
    prefix = path.name[: -len(".trans.txt")]
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        utt, _, text = line.strip().partition(" ")
        match = _UTT.match(utt)
        if match is None or f"{match['spk']}-{match['chapter']}" != prefix:
            raise ValueError(f"{path}:{number}: utterance id {utt!r} is not {prefix}-<n>")
        text = " ".join(text.split())
        if not _TEXT.match(text):
            raise ValueError(
                f"{path}:{number}: transcript must be upper-case words of A-Z and ', got {text!r}"
            )
        entries.append((utt, text))
    return entries


def _split_rows(split_folder: Path, num_workers: int) -> list[dict[str, object]]:
    items = []
    for trans in sorted(split_folder.glob("*/*/*.trans.txt")):
        for utt, text in parse_trans(trans):
            flac = trans.parent / f"{utt}.flac"
            if not flac.is_file():
                raise FileNotFoundError(f"{flac} (listed in {trans}) does not exist")
            items.append((utt, text, flac, trans.parent.parent.name))
    if not items:
        raise FileNotFoundError(f"{split_folder}: no <speaker>/<chapter>/*.trans.txt found")
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        durations = list(pool.map(audio_duration, [flac for _, _, flac, _ in items]))
    return [
        {"ID": utt, "duration": round(d, 4), "wav": str(flac.resolve()), "spk_id": spk, "text": text}
        for (utt, text, flac, spk), d in zip(items, durations, strict=True)
    ]


def prepare_librispeech(
    data_folder: str | Path,
    save_folder: str | Path,
    *,
    train_splits: Sequence[str] = TRAIN_SPLITS,
    valid_split: str = VALID_SPLIT,
    test_splits: Sequence[str] = TEST_SPLITS,
    num_workers: int = 8,
) -> dict[str, Path]:
    """Write the manifests; return ``{"train": ..., "valid": ..., <test split>: ...}`` (test splits in order)."""
    data_folder = Path(data_folder).resolve()
    save_folder = Path(save_folder)
    splits = [*train_splits, valid_split, *test_splits]
    missing = [s for s in splits if not (data_folder / s).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"{data_folder}: LibriSpeech splits {missing} not found (expected <split>/ folders)"
        )
    if set(test_splits) & {"train", "valid"}:
        raise ValueError("test split names 'train' and 'valid' are reserved")
    options = {
        "data_folder": str(data_folder),
        "train_splits": list(train_splits),
        "valid_split": valid_split,
        "test_splits": list(test_splits),
    }
    done = prepared_manifests(save_folder, options)
    if done is not None:
        return done
    train_rows = [row for split in train_splits for row in _split_rows(data_folder / split, num_workers)]
    manifests = {
        "train": write_manifest(save_folder / "train.csv", train_rows),
        "valid": write_manifest(
            save_folder / "valid.csv", _split_rows(data_folder / valid_split, num_workers)
        ),
    }
    for split in test_splits:
        manifests[split] = write_manifest(
            save_folder / f"{split}.csv", _split_rows(data_folder / split, num_workers)
        )
    mark_prepared(save_folder, options, manifests)
    return manifests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_folder", help="the LibriSpeech folder holding the split folders")
    parser.add_argument("save_folder", help="where the manifests go")
    parser.add_argument("--train_splits", nargs="+", default=list(TRAIN_SPLITS))
    parser.add_argument("--valid_split", default=VALID_SPLIT)
    parser.add_argument("--test_splits", nargs="+", default=list(TEST_SPLITS))
    args = parser.parse_args()
    manifests = prepare_librispeech(
        args.data_folder,
        args.save_folder,
        train_splits=args.train_splits,
        valid_split=args.valid_split,
        test_splits=args.test_splits,
    )
    for name, path in manifests.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
