"""Where the real data and models for tests and benchmarks live (never inside the project).

``HF_SQUARELOSS_DATA`` and ``HF_SQUARELOSS_MODELS`` name the folders; by default they are ``../shared/data`` and
``../shared/models`` next to the project root (found from the current directory upwards, then from this file).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_VARS", "shared_dir"]

ENV_VARS = {"data": "HF_SQUARELOSS_DATA", "models": "HF_SQUARELOSS_MODELS"}


def shared_dir(kind: str = "data") -> Path:
    """The folder of shared ``kind`` (``"data"`` or ``"models"``); it may not exist, check before use."""
    if kind not in ENV_VARS:
        raise ValueError(f"kind must be one of {sorted(ENV_VARS)}, got {kind!r}")
    env = os.environ.get(ENV_VARS[kind])
    if env:
        return Path(env).expanduser().resolve()
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            if (folder / "pyproject.toml").is_file():
                candidate = (folder.parent / "shared" / kind).resolve()
                if candidate.is_dir():
                    return candidate
    return (Path.cwd().parent / "shared" / kind).resolve()
