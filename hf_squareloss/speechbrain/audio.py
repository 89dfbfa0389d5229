"""Audio input of the ASR recipes: mono float waveforms through soundfile, and NIST SPHERE headers.

Everything is read with soundfile (libsndfile): WAV, FLAC and uncompressed NIST SPHERE (TIMIT, AN4). Compressed
SPHERE (WSJ's shorten-coded ``.wv1``) is not readable by libsndfile; :func:`sphere_header` lets a prepare script
detect it before training starts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

__all__ = ["read_mono", "sphere_header"]


def read_mono(path: str | Path, sample_rate: int) -> torch.Tensor:
    """``[samples]`` float32 waveform of ``path`` at ``sample_rate`` (channels averaged, resampled if needed)."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise ValueError(f"cannot read audio {path}: {err}") from None
    wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if rate != sample_rate:
        from ..environment import torchaudio_guard

        with torchaudio_guard():
            import torchaudio.functional as AF

        wave = AF.resample(wave, orig_freq=rate, new_freq=sample_rate)
    return wave


def sphere_header(path: str | Path) -> dict[str, int | float | str]:
    """The fields of a NIST SPHERE header (``NIST_1A``, its size, ``name -type value`` lines, ``end_head``).

    ``ValueError`` naming the file when it is not SPHERE or the header is malformed.
    """
    path = Path(path)
    with path.open("rb") as handle:
        start = handle.read(16)
        if not start.startswith(b"NIST_1A"):
            raise ValueError(f"{path}: not a NIST SPHERE file (does not start with NIST_1A)")
        try:
            size = int(start[8:16].split(b"\n")[0])
        except ValueError:
            raise ValueError(f"{path}: malformed SPHERE header size {start[8:16]!r}") from None
        handle.seek(0)
        raw = handle.read(size)
    fields: dict[str, int | float | str] = {}
    lines = raw.decode("ascii", errors="replace").split("\n")
    for number, line in enumerate(lines[2:], start=3):
        line = line.strip()
        if not line:
            continue
        if line == "end_head":
            return fields
        parts = line.split(None, 2)
        if len(parts) != 3 or not parts[1].startswith("-"):
            raise ValueError(f"{path}: malformed SPHERE header line {number}: {line!r}")
        name, kind, value = parts
        if kind == "-i":
            fields[name] = int(value)
        elif kind == "-r":
            fields[name] = float(value)
        else:
            fields[name] = value
    raise ValueError(f"{path}: SPHERE header without end_head in its first {size} bytes")
