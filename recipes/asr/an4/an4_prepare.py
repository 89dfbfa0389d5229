"""Prepare CMU AN4 (Census) in its original distribution layout for the ASR recipe.

Layout read (the CMU tarball, ``an4/``)::

    wav/an4_clstk/<speaker>/<utt>.sph          training audio, NIST SPHERE, 16 kHz, 16-bit
    etc/an4_train.transcription                "<s> WORDS </s> (utt)" per line
    etc/an4_train.fileids                      "an4_clstk/<speaker>/<utt>" per line, same order
    wav/an4test_clstk/<speaker>/<utt>.sph      optional: the official test part
    etc/an4_test.transcription                 optional, same format (etc/an4_test.fileids optional)

Writes ``train.csv``, ``valid.csv`` and, when the test part is present, ``test.csv`` (columns ``ID, duration, wav,
spk_id, text``) to ``save_folder``. The validation set is carved from the training part and is speaker-disjoint
from it: ``valid_speakers_per_gender`` female and as many male speakers (AN4 speaker names start with ``f``/``m``),
drawn with ``seed``; the chosen speakers are listed in ``valid_speakers.txt``.

Usage: ``python an4_prepare.py /path/to/an4 /path/to/save_folder``.
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

from hf_squareloss.speechbrain.manifests import (
    audio_duration,
    mark_prepared,
    prepared_manifests,
    write_manifest,
)

__all__ = ["ALPHABET", "parse_fileids", "parse_transcription", "pick_valid_speakers", "prepare_an4"]

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
"""The characters of AN4's transcripts (spelled letters, digits and command words in upper case)."""

_LINE = re.compile(r"^(?:<s>\s+)?(?P<text>.*?)\s*(?:</s>\s*)?\((?P<utt>[^()\s]+)\)\s*$")
_WORD = re.compile(rf"^[{ALPHABET}]+$")


def parse_transcription(path: str | Path) -> list[tuple[str, str]]:
    """``[(utterance_id, text)]`` of an AN4 transcription file, in file order.

    Each line is ``<s> WORDS </s> (utterance-id)``; ``ValueError`` names the file and line of anything else (a
    missing id, characters outside A-Z, an empty transcript, a repeated id).
    """
    path = Path(path)
    entries: list[tuple[str, str]] = []
    seen: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="ascii", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        match = _LINE.match(line.strip())
        if match is None:
            raise ValueError(f"{path}:{number}: expected '<s> WORDS </s> (utterance-id)', got {line!r}")
        words = match["text"].split()
        if not words:
            raise ValueError(f"{path}:{number}: empty transcript for {match['utt']}")
        bad = [w for w in words if not _WORD.match(w)]
        if bad:
            raise ValueError(f"{path}:{number}: words {bad} hold characters outside A-Z")
        if match["utt"] in seen:
            raise ValueError(f"{path}:{number}: utterance {match['utt']} appears twice")
        seen.add(match["utt"])
        entries.append((match["utt"], " ".join(words)))
    if not entries:
        raise ValueError(f"{path}: no transcripts")
    return entries


def parse_fileids(path: str | Path) -> list[str]:
    """Relative audio paths (without ``.sph``) of an AN4 fileids file: ``an4_clstk/<speaker>/<utt>``."""
    path = Path(path)
    ids = []
    for number, line in enumerate(path.read_text(encoding="ascii", errors="replace").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if len(Path(line).parts) != 3:
            raise ValueError(f"{path}:{number}: expected '<folder>/<speaker>/<utterance>', got {line!r}")
        ids.append(line)
    return ids


def pick_valid_speakers(speakers: list[str], per_gender: int, seed: int) -> list[str]:
    """``per_gender`` female (``f*``) and male (``m*``) speakers drawn with ``seed``, sorted."""
    chosen: list[str] = []
    rng = random.Random(seed)
    for gender in ("f", "m"):
        pool = sorted(s for s in speakers if s.startswith(gender))
        if len(pool) <= per_gender:
            raise ValueError(f"only {len(pool)} speakers of gender {gender!r}: cannot hold out {per_gender}")
        chosen.extend(rng.sample(pool, per_gender))
    return sorted(chosen)


def _rows(data_folder: Path, part: str, audio_folder: str) -> list[dict[str, object]]:
    """Manifest rows of one part (``train`` or ``test``)."""
    transcription = data_folder / "etc" / f"an4_{part}.transcription"
    fileids = data_folder / "etc" / f"an4_{part}.fileids"
    entries = parse_transcription(transcription)
    if fileids.is_file():
        relative = parse_fileids(fileids)
        if len(relative) != len(entries):
            raise ValueError(
                f"{fileids}: {len(relative)} files but {transcription} has {len(entries)} transcripts"
            )
        for number, ((utt, _), rel) in enumerate(zip(entries, relative, strict=True), start=1):
            if Path(rel).name != utt:
                raise ValueError(
                    f"{fileids}:{number}: {rel} does not match transcript {utt} of {transcription}"
                )
    else:  # utterance ids are <prompt>-<speaker>-<mic>
        relative = []
        for utt, _ in entries:
            parts = utt.split("-")
            if len(parts) < 3:
                raise ValueError(f"{transcription}: cannot tell the speaker of {utt} without {fileids}")
            relative.append(f"{audio_folder}/{parts[-2]}/{utt}")
    rows = []
    for (utt, text), rel in zip(entries, relative, strict=True):
        wav = (data_folder / "wav" / rel).with_suffix(".sph")
        if not wav.is_file():
            raise FileNotFoundError(f"{wav} (listed for {utt} in {transcription}) does not exist")
        rows.append(
            {
                "ID": utt,
                "duration": round(audio_duration(wav), 4),
                "wav": str(wav.resolve()),
                "spk_id": Path(rel).parent.name,
                "text": text,
            }
        )
    return rows


def prepare_an4(
    data_folder: str | Path,
    save_folder: str | Path,
    *,
    valid_speakers_per_gender: int = 5,
    seed: int = 1234,
) -> dict[str, Path]:
    """Write the AN4 manifests; return ``{"train": ..., "valid": ...[, "test": ...]}``."""
    data_folder = Path(data_folder).resolve()
    save_folder = Path(save_folder)
    if not (data_folder / "etc" / "an4_train.transcription").is_file():
        raise FileNotFoundError(
            f"{data_folder} is not an AN4 folder: etc/an4_train.transcription is missing (expected the CMU layout "
            "wav/an4_clstk/<speaker>/*.sph + etc/an4_train.transcription)"
        )
    has_test = (data_folder / "etc" / "an4_test.transcription").is_file() and (
        data_folder / "wav" / "an4test_clstk"
    ).is_dir()
    options = {
        "data_folder": str(data_folder),
        "valid_speakers_per_gender": int(valid_speakers_per_gender),
        "seed": int(seed),
        "test": has_test,
    }
    done = prepared_manifests(save_folder, options)
    if done is not None:
        return done

    rows = _rows(data_folder, "train", "an4_clstk")
    speakers = sorted({str(r["spk_id"]) for r in rows})
    valid_speakers = set(pick_valid_speakers(speakers, valid_speakers_per_gender, seed))
    manifests = {
        "train": write_manifest(
            save_folder / "train.csv", [r for r in rows if r["spk_id"] not in valid_speakers]
        ),
        "valid": write_manifest(
            save_folder / "valid.csv", [r for r in rows if r["spk_id"] in valid_speakers]
        ),
    }
    (save_folder / "valid_speakers.txt").write_text(
        "\n".join(sorted(valid_speakers)) + "\n", encoding="utf-8"
    )
    if has_test:
        manifests["test"] = write_manifest(
            save_folder / "test.csv", _rows(data_folder, "test", "an4test_clstk")
        )
    mark_prepared(save_folder, options, manifests)
    return manifests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_folder", help="the AN4 folder (holding wav/ and etc/)")
    parser.add_argument("save_folder", help="where the manifests go")
    parser.add_argument("--valid_speakers_per_gender", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    manifests = prepare_an4(
        args.data_folder,
        args.save_folder,
        valid_speakers_per_gender=args.valid_speakers_per_gender,
        seed=args.seed,
    )
    for name, path in manifests.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
