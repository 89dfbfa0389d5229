"""Prepare the Wall Street Journal corpus (WSJ0 LDC93S6B + WSJ1 LDC94S13B) in its LDC layout for the recipe.

Layout read: the LDC discs (``11-1.1/wsj0/...``, ``13-34.1/wsj1/...``) or the usual merged copies ``wsj0/`` and
``wsj1/`` under ``data_folder``. Audio is found by walking the tree for ``*.wv1`` (Sennheiser microphone; any letter
case) and assigned to a set by the collection (``wsj0``/``wsj1`` path component) and the subset folder above the
speaker folder:

=========  ==================================  ============================================
set        folders                             size (full corpus)
=========  ==================================  ============================================
train      ``wsj0/si_tr_s`` + ``wsj1/si_tr_s``  si284: 284 speakers, about 37k utterances
valid      ``wsj1/si_dt_20``                   dev93: 503 utterances
test       ``wsj0/si_et_20``                   eval92: 333 utterances
=========  ==================================  ============================================

Transcripts come from every ``*.dot`` file under ``data_folder`` (``TEXT (utterance-id)`` per line) and are
normalised to upper-case words of A-Z and apostrophes (:func:`normalise_transcript`).

The ``.wv1`` files are SPHERE compressed with *shorten*, which libsndfile cannot read. They are converted once to WAV
with ``sph2pipe -f wav`` (from Kaldi's tools or the LDC) into ``<save_folder>/wav``; when ``sph2pipe`` is neither
given nor on ``PATH`` preparation stops and says so. Uncompressed SPHERE files are used as they are.

Usage: ``python wsj_prepare.py /path/to/wsj /path/to/save_folder [--sph2pipe /path/to/sph2pipe]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hf_squareloss.speechbrain.audio import sphere_header
from hf_squareloss.speechbrain.manifests import (
    audio_duration,
    mark_prepared,
    prepared_manifests,
    write_manifest,
)

__all__ = ["ALPHABET", "SETS", "find_sph2pipe", "normalise_transcript", "parse_dot", "prepare_wsj"]

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ'"
SETS: dict[str, tuple[tuple[str, str], ...]] = {
    "train": (("wsj0", "si_tr_s"), ("wsj1", "si_tr_s")),  # si284
    "valid": (("wsj1", "si_dt_20"),),  # dev93
    "test": (("wsj0", "si_et_20"),),  # eval92
}

_DOT_LINE = re.compile(r"^(?P<text>.*?)\s*\((?P<utt>[0-9A-Za-z]{8})\)\s*$")
_NOISE = re.compile(r"^\[.*\]$")  # [loud_breath], [<door_slam], [door_slam>], [phone_ring/], [/phone_ring]
_KEEP = re.compile(r"[^A-Z' ]")


def normalise_transcript(text: str) -> str:
    """Spoken words of a WSJ ``.dot`` transcript, upper case, letters and apostrophes only.

    Noise and event markers in brackets, the truncation mark ``~`` and the pause mark ``.`` are dropped; a verbally
    deleted word ``<word>`` and a mispronounced ``*word*`` keep the word; backslash quoting (``isn\\'t``, ``I\\.``)
    and the punctuation of verbalised punctuation (``,COMMA`` -> ``COMMA``, ``%PERCENT`` -> ``PERCENT``) are removed;
    hyphens and other characters separate words.
    """
    words = []
    for token in text.upper().replace("\\", "").split():
        if _NOISE.match(token) or token in ("~", "."):
            continue
        token = _KEEP.sub(" ", token.replace("-", " "))
        words.extend(w.strip("'") for w in token.split() if w.strip("'"))
    return " ".join(words)


def parse_dot(path: str | Path) -> dict[str, str]:
    """``{utterance_id: raw transcript}`` of a ``.dot`` file; ``ValueError`` naming the file and line of a bad line."""
    path = Path(path)
    entries: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="latin-1").splitlines(), start=1):
        if not line.strip():
            continue
        match = _DOT_LINE.match(line.strip())
        if match is None:
            raise ValueError(f"{path}:{number}: expected 'TRANSCRIPT (utterance-id)', got {line!r}")
        entries[match["utt"].lower()] = match["text"]
    return entries


def find_sph2pipe(explicit: str | Path | None = None) -> Path | None:
    """``explicit``, else ``$SPH2PIPE``, else ``sph2pipe`` on ``PATH``; ``None`` when there is none."""
    for candidate in (explicit, os.environ.get("SPH2PIPE")):
        if candidate:
            path = Path(candidate)
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise FileNotFoundError(f"sph2pipe {path} is not an executable file")
            return path
    found = shutil.which("sph2pipe")
    return Path(found) if found else None


def _is_compressed(path: Path) -> bool:
    coding = str(sphere_header(path).get("sample_coding", "pcm"))
    return "shorten" in coding.lower() or "wavpack" in coding.lower()


def _collect(data_folder: Path) -> dict[str, list[tuple[str, str, Path]]]:
    """``set -> [(utterance id, speaker, .wv1 path)]``."""
    wanted = {pair: name for name, pairs in SETS.items() for pair in pairs}
    found: dict[str, list[tuple[str, str, Path]]] = {name: [] for name in SETS}
    for root, _, files in os.walk(data_folder):
        for file in files:
            if not file.lower().endswith(".wv1"):
                continue
            path = Path(root) / file
            parts = [p.lower() for p in path.relative_to(data_folder).parts]
            collection = next((p for p in parts if p in ("wsj0", "wsj1")), None)
            if collection is None or len(parts) < 3:
                continue
            name = wanted.get((collection, parts[-3]))
            if name is not None:
                found[name].append((path.stem.lower(), parts[-2], path))
    return found


def _convert(sph2pipe: Path, source: Path, target: Path) -> Path:
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.wav")
    result = subprocess.run(
        [str(sph2pipe), "-f", "wav", str(source), str(tmp)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0 or not tmp.is_file():
        raise RuntimeError(f"sph2pipe failed on {source}: {result.stderr.strip() or result.returncode}")
    tmp.replace(target)
    return target


def prepare_wsj(
    data_folder: str | Path,
    save_folder: str | Path,
    *,
    sph2pipe: str | Path | None = None,
    num_workers: int = 4,
) -> dict[str, Path]:
    """Write the WSJ manifests (converting shorten-compressed audio); return ``{"train", "valid", "test"}``."""
    data_folder = Path(data_folder).resolve()
    save_folder = Path(save_folder)
    if not data_folder.is_dir():
        raise FileNotFoundError(f"WSJ folder {data_folder} does not exist")
    options = {"data_folder": str(data_folder), "sets": {k: [list(p) for p in v] for k, v in SETS.items()}}
    done = prepared_manifests(save_folder, options)
    if done is not None:
        return done

    found = _collect(data_folder)
    for name, items in found.items():
        if not items:
            folders = ", ".join("/".join(pair) for pair in SETS[name])
            raise FileNotFoundError(f"{data_folder}: no .wv1 files for the {name} set (looked in {folders})")
    transcripts: dict[str, str] = {}
    for root, _, files in os.walk(data_folder):
        for file in files:
            if file.lower().endswith(".dot"):
                for utt, text in parse_dot(Path(root) / file).items():
                    transcripts.setdefault(utt, text)

    audio: dict[Path, Path] = {}
    compressed = [path for items in found.values() for _, _, path in items if _is_compressed(path)]
    if compressed:
        tool = find_sph2pipe(sph2pipe)
        if tool is None:
            raise RuntimeError(
                f"{len(compressed)} .wv1 files (e.g. {compressed[0]}) are shorten-compressed SPHERE, which "
                "soundfile/libsndfile cannot read. Install sph2pipe (Kaldi: tools/extras/install_sph2pipe.sh, or "
                "the LDC's sph2pipe_v2.5) and put it on PATH, set SPH2PIPE=/path/to/sph2pipe, or pass "
                "--sph2pipe /path/to/sph2pipe; the files are then converted once to WAV under the save folder"
            )
        targets = [
            save_folder / "wav" / path.relative_to(data_folder).with_suffix(".wav") for path in compressed
        ]
        with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
            converted = list(pool.map(lambda st: _convert(tool, *st), zip(compressed, targets, strict=True)))
        audio.update(zip(compressed, converted, strict=True))

    manifests = {}
    for name, items in found.items():
        rows = []
        for utt, speaker, path in sorted(items):
            if utt not in transcripts:
                raise ValueError(
                    f"no transcript for {path} (utterance {utt}) in any .dot file under {data_folder}"
                )
            text = normalise_transcript(transcripts[utt])
            if not text:
                continue  # nothing but noise markers
            wav = audio.get(path, path)
            rows.append(
                {
                    "ID": utt,
                    "duration": round(audio_duration(wav), 4),
                    "wav": str(wav.resolve()),
                    "spk_id": speaker,
                    "text": text,
                }
            )
        manifests[name] = write_manifest(save_folder / f"{name}.csv", rows)
    mark_prepared(save_folder, options, manifests)
    return manifests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_folder", help="folder holding the WSJ0 and WSJ1 discs (or wsj0/ and wsj1/)")
    parser.add_argument("save_folder", help="where the manifests (and converted audio) go")
    parser.add_argument("--sph2pipe", default=None, help="path of the sph2pipe executable")
    parser.add_argument("--num_workers", type=int, default=4)
    args = parser.parse_args()
    manifests = prepare_wsj(
        args.data_folder, args.save_folder, sph2pipe=args.sph2pipe, num_workers=args.num_workers
    )
    for name, path in manifests.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
