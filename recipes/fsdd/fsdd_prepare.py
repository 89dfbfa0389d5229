"""Free Spoken Digit Dataset manifests for speaker or digit identification.

The corpus is ``recordings/{digit}_{speaker}_{take}.wav`` (8 kHz mono, 6 speakers, 50 takes of each digit). Takes
0-4 are the test split (the corpus' convention; ``test_takes`` < 5 keeps only the first ones, for quick runs); the
next ``valid_takes`` takes are the validation split and the next ``train_takes`` the training split. Every split holds every speaker and every digit, so either can be the label.

Each manifest is SpeechBrain JSON: ``{utterance id: {"wav": path, "speaker": ..., "digit": ...}}``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

__all__ = ["TEST_TAKES", "classes", "prepare_fsdd"]

TEST_TAKES = 5
_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def _recordings(data_folder: Path) -> list[tuple[str, str, int, Path]]:
    folder = (data_folder / "recordings").resolve()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{data_folder} is not the Free Spoken Digit Dataset: {folder} is missing (expected "
            "recordings/{digit}_{speaker}_{take}.wav)"
        )
    found = []
    for path in sorted(folder.iterdir()):
        match = _NAME.match(path.name)
        if match:
            found.append((match.group(1), match.group(2), int(match.group(3)), path))
    if not found:
        raise FileNotFoundError(f"no {{digit}}_{{speaker}}_{{take}}.wav file in {folder}")
    return found


def classes(manifest: str | Path, task: str) -> list[str]:
    """The sorted labels of ``task`` (``"speaker"`` or ``"digit"``) in a manifest."""
    if task not in ("speaker", "digit"):
        raise ValueError(f"task must be 'speaker' or 'digit', got {task!r}")
    with open(manifest, encoding="utf-8") as fh:
        return sorted({row[task] for row in json.load(fh).values()})


def prepare_fsdd(
    data_folder: str | Path,
    save_folder: str | Path,
    *,
    train_takes: int = 40,
    valid_takes: int = 5,
    test_takes: int = TEST_TAKES,
) -> dict[str, Path]:
    """Write ``train.json``, ``valid.json`` and ``test.json`` into ``save_folder``; return their paths."""
    if train_takes < 1 or valid_takes < 1 or not 1 <= test_takes <= TEST_TAKES:
        raise ValueError(
            f"train_takes and valid_takes must be >= 1 and test_takes in [1, {TEST_TAKES}], got {train_takes}, "
            f"{valid_takes} and {test_takes}"
        )
    recordings = _recordings(Path(data_folder))
    first_train = TEST_TAKES + valid_takes
    bounds = {
        "test": (0, test_takes),
        "valid": (TEST_TAKES, first_train),
        "train": (first_train, first_train + train_takes),
    }
    save_folder = Path(save_folder)
    save_folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, (lo, hi) in bounds.items():
        rows = {
            f"{digit}_{speaker}_{take}": {"wav": str(path), "speaker": speaker, "digit": digit}
            for digit, speaker, take, path in recordings
            if lo <= take < hi
        }
        if not rows:
            raise ValueError(f"the {split} split (takes {lo} to {hi - 1}) is empty in {data_folder}")
        paths[split] = save_folder / f"{split}.json"
        with open(paths[split], "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)
    return paths
