"""Prepare TIMIT (LDC93S1) in its LDC layout for the phone-recognition recipe.

Layout read (upper- or lower-case names, as on the LDC disc or its common lower-case copies)::

    <data_folder>/TRAIN/DR1/FCJF0/SI1027.WAV   NIST SPHERE, 16 kHz, 16-bit
    <data_folder>/TRAIN/DR1/FCJF0/SI1027.PHN   "<start> <end> <phone>" per line, 61 phones
    <data_folder>/TRAIN/DR1/FCJF0/SI1027.WRD   word alignments (not needed)
    <data_folder>/TEST/...

Writes ``train.csv`` (all TRAIN utterances), ``valid.csv`` (the standard 50-speaker development set from TEST) and
``test.csv`` (the 24-speaker core test set) with ``text`` = the phones folded from 61 to the 39 of Lee & Hon
(1989), space separated (``q`` deleted, closures and pauses folded into ``sil``). The SA1/SA2 dialect sentences,
read by every speaker, are dropped as is customary.

Usage: ``python timit_prepare.py /path/to/TIMIT /path/to/save_folder``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hf_squareloss.speechbrain.manifests import (
    audio_duration,
    mark_prepared,
    prepared_manifests,
    write_manifest,
)

__all__ = [
    "CORE_TEST_SPEAKERS",
    "DEV_SPEAKERS",
    "FOLD_61_TO_39",
    "PHONES_39",
    "fold_phones",
    "parse_phn",
    "prepare_timit",
]

# Lee & Hon (1989) folding of the 61 TIMIT phones to 39 classes; q (glottal stop) is deleted (None).
FOLD_61_TO_39: dict[str, str | None] = {
    **{
        p: p
        for p in [
            "iy",
            "ih",
            "eh",
            "ey",
            "ae",
            "aa",
            "aw",
            "ay",
            "ah",
            "oy",
            "ow",
            "uh",
            "uw",
            "er",
            "l",
            "r",
            "w",
            "y",
            "m",
            "n",
            "ng",
            "ch",
            "jh",
            "dh",
            "b",
            "d",
            "dx",
            "g",
            "p",
            "t",
            "k",
            "z",
            "v",
            "f",
            "th",
            "s",
            "sh",
            "hh",
        ]
    },
    "ao": "aa",
    "ax": "ah",
    "ax-h": "ah",
    "axr": "er",
    "ix": "ih",
    "ux": "uw",
    "el": "l",
    "em": "m",
    "en": "n",
    "nx": "n",
    "eng": "ng",
    "zh": "sh",
    "hv": "hh",
    **{p: "sil" for p in ("bcl", "dcl", "gcl", "pcl", "tcl", "kcl", "h#", "pau", "epi")},
    "q": None,
}
PHONES_39: tuple[str, ...] = tuple(sorted({p for p in FOLD_61_TO_39.values() if p is not None}))

# The standard development set (50 speakers) and core test set (24 speakers: 2 male and 1 female per dialect
# region), both drawn from TIMIT's TEST part; speaker folder names in lower case.
DEV_SPEAKERS = frozenset(
    [
        "faks0",
        "fdac1",
        "fjem0",
        "mgwt0",
        "mjar0",
        "mmdb1",
        "mmdm2",
        "mpdf0",
        "fcmh0",
        "fkms0",
        "mbdg0",
        "mbwm0",
        "mcsh0",
        "fadg0",
        "fdms0",
        "fedw0",
        "mgjf0",
        "mglb0",
        "mrtk0",
        "mtaa0",
        "mtdt0",
        "mthc0",
        "mwjg0",
        "fnmr0",
        "frew0",
        "fsem0",
        "mbns0",
        "mmjr0",
        "mdls0",
        "mdlf0",
        "mdvc0",
        "mers0",
        "fmah0",
        "fdrw0",
        "mrcs0",
        "mrjm4",
        "fcal1",
        "mmwh0",
        "fjsj0",
        "majc0",
        "mjsw0",
        "mreb0",
        "fgjd0",
        "fjmg0",
        "mroa0",
        "mteb0",
        "mjfc0",
        "mrjr0",
        "fmml0",
        "mrws1",
    ]
)
CORE_TEST_SPEAKERS = frozenset(
    [
        "mdab0",
        "mwbt0",
        "felc0",
        "mtas1",
        "mwew0",
        "fpas0",
        "mjmp0",
        "mlnt0",
        "fpkt0",
        "mlll0",
        "mtls0",
        "fjlm0",
        "mbpm0",
        "mklt0",
        "fnlp0",
        "mcmj0",
        "mjdh0",
        "fmgd0",
        "mgrt0",
        "mnjm0",
        "fdhc0",
        "mjln0",
        "mpam0",
        "fmld0",
    ]
)
_DIALECT_SENTENCES = ("sa1", "sa2")


def parse_phn(path: str | Path) -> list[str]:
    """The 61-set phones of a ``.PHN`` file in order; ``ValueError`` naming the file and line of a bad line."""
    path = Path(path)
    phones = []
    for number, line in enumerate(path.read_text(encoding="ascii", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            raise ValueError(f"{path}:{number}: expected '<start> <end> <phone>', got {line!r}")
        if int(parts[1]) < int(parts[0]):
            raise ValueError(f"{path}:{number}: segment ends ({parts[1]}) before it starts ({parts[0]})")
        phone = parts[2].lower()
        if phone not in FOLD_61_TO_39:
            raise ValueError(f"{path}:{number}: {parts[2]!r} is not one of the 61 TIMIT phones")
        phones.append(phone)
    if not phones:
        raise ValueError(f"{path}: no phones")
    return phones


def fold_phones(phones: list[str]) -> list[str]:
    """61 -> 39 folding (``q`` removed)."""
    return [folded for p in phones if (folded := FOLD_61_TO_39[p]) is not None]


def _child(folder: Path, name: str) -> Path | None:
    """``folder/name`` in any letter case."""
    for entry in folder.iterdir():
        if entry.name.lower() == name:
            return entry
    return None


def _utterances(part: Path) -> list[tuple[str, Path, Path]]:
    """``(speaker, audio, phn)`` of a TRAIN or TEST folder, SA sentences excluded."""
    found = []
    for audio in sorted(part.glob("*/*/*")):
        if len(audio.suffixes) != 1 or audio.suffix.lower() != ".wav" or not audio.is_file():
            continue  # also skips converted copies such as SX1.WAV.wav
        if audio.stem.lower() in _DIALECT_SENTENCES:
            continue
        phn = next((p for p in audio.parent.glob(audio.stem + ".*") if p.suffix.lower() == ".phn"), None)
        if phn is None:
            raise FileNotFoundError(f"{audio} has no .PHN transcription next to it")
        found.append((audio.parent.name.lower(), audio, phn))
    return found


def _row(speaker: str, audio: Path, phn: Path) -> dict[str, object]:
    phones = fold_phones(parse_phn(phn))
    if not phones:
        raise ValueError(f"{phn}: no phones left after folding")
    dialect = audio.parent.parent.name.lower()
    return {
        "ID": f"{dialect}_{speaker}_{audio.stem.lower()}",
        "duration": round(audio_duration(audio), 4),
        "wav": str(audio.resolve()),
        "spk_id": speaker,
        "text": " ".join(phones),
    }


def prepare_timit(data_folder: str | Path, save_folder: str | Path) -> dict[str, Path]:
    """Write the TIMIT manifests; return ``{"train": ..., "valid": ..., "test": ...}``."""
    data_folder = Path(data_folder).resolve()
    save_folder = Path(save_folder)
    train = _child(data_folder, "train") if data_folder.is_dir() else None
    test = _child(data_folder, "test") if data_folder.is_dir() else None
    if train is None or test is None:
        raise FileNotFoundError(
            f"{data_folder} is not a TIMIT folder: expected TRAIN/ and TEST/ (or train/, test/) holding "
            "<dialect region>/<speaker>/<utterance>.WAV|PHN"
        )
    options = {"data_folder": str(data_folder), "phones": "39", "drop": list(_DIALECT_SENTENCES)}
    done = prepared_manifests(save_folder, options)
    if done is not None:
        return done
    rows = {"train": [_row(*u) for u in _utterances(train)], "valid": [], "test": []}
    for speaker, audio, phn in _utterances(test):
        if speaker in DEV_SPEAKERS:
            rows["valid"].append(_row(speaker, audio, phn))
        elif speaker in CORE_TEST_SPEAKERS:
            rows["test"].append(_row(speaker, audio, phn))
    for name, chosen in rows.items():
        if not chosen:
            raise ValueError(f"{data_folder}: no utterances for the {name} set (SA sentences excluded)")
    manifests = {name: write_manifest(save_folder / f"{name}.csv", chosen) for name, chosen in rows.items()}
    mark_prepared(save_folder, options, manifests)
    return manifests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_folder", help="the TIMIT folder holding TRAIN/ and TEST/")
    parser.add_argument("save_folder", help="where the manifests go")
    args = parser.parse_args()
    for name, path in prepare_timit(args.data_folder, args.save_folder).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
