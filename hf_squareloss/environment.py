"""What is installed, for bug reports (``hf-squareloss env``), and a clear error for a torch/torchaudio pair that
cannot load together.

``torchaudio`` ships a compiled library built against one torch release but declares a loose torch requirement,
so pip can install a pair that fails at import with ``OSError: Could not load this library: .../libtorchaudio.so``.
``transformers`` imports ``torchaudio`` whenever it is installed, so such a pair breaks every import of
``transformers`` as well, far from its cause. :func:`torchaudio_problem` names the pair and what to install instead;
:func:`explain_import_error` turns that ``OSError`` into an ``ImportError`` saying the same.

Nothing here imports ``transformers`` or SpeechBrain at module level: the report must work when they cannot load.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "PACKAGES",
    "TESTED_TORCH_PAIR",
    "TORCHAUDIO_LOADS_WITH",
    "cpu_bf16_is_native",
    "environment_report",
    "explain_import_error",
    "installed_version",
    "torchaudio_guard",
    "torchaudio_problem",
]

# The distributions a bug report needs, in the order they are printed.
PACKAGES: tuple[str, ...] = (
    "hf-squareloss",
    "torch",
    "torchaudio",
    "transformers",
    "datasets",
    "accelerate",
    "evaluate",
    "huggingface_hub",
    "speechbrain",
    "soundfile",
    "numpy",
)

# torchaudio release -> the torch release it was measured to load with (fresh virtualenvs, 2026-11-30). A pair not
# listed here may work; a pair that fails is reported with the torch this table names for its torchaudio.
TORCHAUDIO_LOADS_WITH: dict[str, str] = {
    "2.11.0": "2.11.0",
    "2.11.1": "2.14.1",
}

# The (torch, torchaudio) pair of constraints.txt, the set CI tests (a test keeps the two in agreement).
TESTED_TORCH_PAIR: tuple[str, str] = ("2.14.1", "2.11.1")


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or ``None`` when it is not installed (nothing is imported)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _release(version: str | None) -> str | None:
    """``2.14.1+cu130`` -> ``2.14.1``."""
    return None if version is None else version.split("+", 1)[0]


def _install_advice(torchaudio_version: str | None) -> str:
    torch_ok = TORCHAUDIO_LOADS_WITH.get(_release(torchaudio_version) or "")
    tested_torch, tested_audio = TESTED_TORCH_PAIR
    lines = []
    if torch_ok is not None:
        lines.append(
            f"torchaudio {torchaudio_version} loads with torch {torch_ok}: pip install 'torch=={torch_ok}'"
        )
    lines.append(
        f"the tested pair: pip install 'torch=={tested_torch}' 'torchaudio=={tested_audio}' (from a checkout of "
        "hf-squareloss: pip install -c constraints.txt -e '.[asr]')"
    )
    lines.append("or, without SpeechBrain/ASR: pip uninstall torchaudio")
    return "; ".join(lines)


def _broken_pair_message(error: BaseException) -> str:
    torch_version = installed_version("torch")
    audio_version = installed_version("torchaudio")
    causes = [error, error.__cause__] if error.__cause__ is not None else [error]
    first_line = "; ".join(
        str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__ for e in causes
    )
    return (
        f"torchaudio {audio_version} cannot load with the installed torch {torch_version} ({first_line}). "
        "transformers and SpeechBrain import torchaudio whenever it is installed, so nothing that uses them can "
        f"run until the pair matches. To fix it: {_install_advice(audio_version)}."
    )


def torchaudio_problem() -> str | None:
    """``None`` when torchaudio is not installed or imports; otherwise what is wrong and what to install."""
    if installed_version("torchaudio") is None:
        return None
    try:
        importlib.import_module("torchaudio")
    except (OSError, ImportError, RuntimeError) as err:
        return _broken_pair_message(err)
    return None


def _is_torchaudio_load_error(error: BaseException) -> bool:
    text = str(error)
    return "torchaudio" in text or "libtorchaudio" in text


def explain_import_error(error: BaseException) -> ImportError | None:
    """An ``ImportError`` naming the torch/torchaudio pair when ``error`` is torchaudio's library failing to load."""
    if isinstance(error, OSError) and _is_torchaudio_load_error(error):
        return ImportError(_broken_pair_message(error))
    return None


@contextmanager
def torchaudio_guard() -> Iterator[None]:
    """Wrap an import of transformers, SpeechBrain or torchaudio: a torchaudio library that cannot load with the
    installed torch becomes an ``ImportError`` that says which pair is installed and what to install."""
    try:
        yield
    except OSError as err:
        explained = explain_import_error(err)
        if explained is None:
            raise
        raise explained from err


def cpu_bf16_is_native() -> bool | None:
    """Whether this CPU computes bfloat16 matrix products natively (AVX512-BF16 or AMX), as torch sees it.

    ``False`` means bf16 autocast on the CPU (``--bf16 --use_cpu``) runs emulated kernels, usually much slower
    than float32 (``recipes/benchmarks/bench_precision.py`` measures it). ``None`` when this torch cannot say.
    """
    try:
        import torch
    except Exception:
        return None
    probes = [
        getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ]
    if any(probe is None for probe in probes):
        return None
    return any(bool(probe()) for probe in probes)


def _torch_lines() -> tuple[list[str], list[str]]:
    """Lines about torch's build and devices, and the problems found."""
    try:
        import torch
    except Exception as err:  # a broken torch is exactly what the report is for
        return [f"- torch: cannot be imported ({type(err).__name__}: {err})"], [
            f"torch cannot be imported: {err}"
        ]
    cuda = torch.version.cuda
    build = (
        f"CUDA {cuda} build"
        if cuda
        else ("ROCm build" if getattr(torch.version, "hip", None) else "CPU build")
    )
    lines = [f"- torch build: {torch.__version__}, {build}"]
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        lines.append(f"- torch devices: cpu, {torch.cuda.device_count()} CUDA ({names})")
    else:
        mps = getattr(torch.backends, "mps", None)
        extra = ", mps" if mps is not None and mps.is_available() else ""
        lines.append(f"- torch devices: cpu{extra} (CUDA available: no)")
    lines.append(f"- torch CPU threads: {torch.get_num_threads()}")
    capability = torch.backends.cpu.get_cpu_capability()
    native = cpu_bf16_is_native()
    bf16 = {
        True: "native bf16: yes",
        False: "native bf16: no (bf16 autocast on this CPU is emulated: train in float32, without --bf16)",
        None: "native bf16: unknown",
    }[native]
    lines.append(f"- torch CPU kernels: {capability}; {bf16}")
    return lines, []


def _import_line(module: str, distribution: str) -> tuple[str, str | None]:
    if installed_version(distribution) is None:
        return f"- {module} imports: not installed", None
    try:
        importlib.import_module(module)
    except Exception as err:
        explained = explain_import_error(err)
        message = str(explained) if explained is not None else f"{type(err).__name__}: {err}"
        return f"- {module} imports: NO ({message})", f"{module} cannot be imported: {message}"
    return f"- {module} imports: yes", None


def environment_report() -> tuple[str, list[str]]:
    """The plain-text report of ``hf-squareloss env`` and the list of problems found (empty when all is well)."""
    lines = [
        "hf-squareloss environment (paste this into a bug report)",
        "",
        f"- Platform: {platform.platform()}",
        f"- Python: {sys.version.split()[0]} ({sys.executable})",
    ]
    for distribution in PACKAGES:
        lines.append(f"- {distribution}: {installed_version(distribution) or 'not installed'}")
    torch_lines, problems = _torch_lines()
    lines += torch_lines
    audio = torchaudio_problem()
    if audio is not None:
        lines.append(f"- torchaudio loads: NO. {audio}")
        problems.append(audio)
    elif installed_version("torchaudio") is not None:
        lines.append("- torchaudio loads: yes")
    else:
        lines.append(
            "- torchaudio loads: not installed (the ASR recipes and the SpeechBrain hook need the asr extra)"
        )
    if audio is None:  # with a broken torchaudio, both fail for the reason already given
        for module, distribution in (("speechbrain", "speechbrain"), ("transformers", "transformers")):
            line, problem = _import_line(module, distribution)
            lines.append(line)
            if problem is not None:
                problems.append(problem)
    lines.append("")
    lines.append("problems: " + ("none" if not problems else f"{len(problems)}, see above"))
    return "\n".join(lines), problems
