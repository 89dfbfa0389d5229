"""``hf-squareloss env``, the torch/torchaudio pair check, and the tested set in constraints.txt."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from hf_squareloss import environment
from hf_squareloss.cli import main

ROOT = Path(__file__).resolve().parents[1]
LIBRARY_ERROR = (
    "Could not load this library: /venv/lib/python3.11/site-packages/torchaudio/lib/libtorchaudio.so"
)


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_report_lists_installed_versions_and_no_problem(capsys):
    report, problems = environment.environment_report()
    assert problems == []
    for distribution in ("torch", "transformers", "datasets", "accelerate", "evaluate", "huggingface_hub"):
        assert f"- {distribution}: {importlib.metadata.version(distribution)}" in report
    assert f"Python: {sys.version.split()[0]}" in report
    assert "torch build: " in report and "torch devices: cpu" in report
    assert "transformers imports: yes" in report
    if environment.installed_version("torchaudio") is not None:
        assert "torchaudio loads: yes" in report
    assert report.rstrip().endswith("problems: none")
    assert main(["env"]) == 0
    assert capsys.readouterr().out.strip() == report.strip()


def _cpuinfo_flags() -> set[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def test_native_bf16_agrees_with_the_cpu_flags_the_kernel_reports():
    """Independent source: the flags of /proc/cpuinfo (Linux), not torch's own probe."""
    flags = _cpuinfo_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo flags on this system")
    expected = bool(flags & {"avx512_bf16", "amx_bf16", "amx_tile"})
    assert environment.cpu_bf16_is_native() is expected
    report, _ = environment.environment_report()
    assert f"native bf16: {'yes' if expected else 'no'}" in report


def test_bf16_on_a_cpu_without_native_bf16_gets_a_warning_at_train_start(monkeypatch, tmp_path, caplog):
    import logging

    from transformers import TrainerControl, TrainerState, TrainingArguments

    from hf_squareloss import loss_function as trainer_module
    from hf_squareloss import make_compute_loss_func

    loss = make_compute_loss_func("square")
    state = TrainerState()

    def warnings_at_train_start(native, **args):
        monkeypatch.setattr(trainer_module, "cpu_bf16_is_native", lambda: native)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=trainer_module.logger.name):
            loss.on_train_begin(
                TrainingArguments(str(tmp_path), use_cpu=True, **args), state, TrainerControl()
            )
        return [r.getMessage() for r in caplog.records if "bf16" in r.getMessage()]

    (message,) = warnings_at_train_start(False, bf16=True)
    assert "without native bf16" in message and "without --bf16" in message
    assert warnings_at_train_start(True, bf16=True) == []
    assert warnings_at_train_start(None, bf16=True) == []  # torch cannot say: no guess
    assert warnings_at_train_start(False) == []  # float32


def _broken_pair(monkeypatch, torch_version: str, audio_version: str) -> None:
    versions = {"torch": torch_version, "torchaudio": audio_version}
    real_version, real_import = environment.installed_version, environment.importlib.import_module

    def fake_import(name, *args, **kwargs):
        if name == "torchaudio":
            raise OSError(LIBRARY_ERROR)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(environment, "installed_version", lambda d: versions.get(d) or real_version(d))
    monkeypatch.setattr(environment.importlib, "import_module", fake_import)


def test_broken_pair_is_named_with_the_torch_to_install(monkeypatch, capsys):
    _broken_pair(monkeypatch, "2.11.0", "2.11.1")
    problem = environment.torchaudio_problem()
    assert problem is not None
    assert "torchaudio 2.11.1 cannot load with the installed torch 2.11.0" in problem
    assert (
        "pip install 'torch==2.14.1'" in problem
    )  # the torch that torchaudio 2.11.1 was measured to load with
    assert "libtorchaudio.so" in problem
    assert main(["env"]) == 1
    out = capsys.readouterr().out
    assert "torchaudio loads: NO" in out and "problems: 1" in out


def test_unknown_torchaudio_release_gets_the_tested_pair(monkeypatch):
    _broken_pair(monkeypatch, "2.12.1", "9.9.9")
    problem = environment.torchaudio_problem()
    tested_torch, tested_audio = environment.TESTED_TORCH_PAIR
    assert f"pip install 'torch=={tested_torch}' 'torchaudio=={tested_audio}'" in problem
    assert "loads with torch" not in problem.split("To fix it:")[1].split(";")[0]


def test_guard_turns_only_torchaudio_load_errors_into_import_errors():
    with (
        pytest.raises(ImportError, match=r"cannot load with the installed torch") as info,
        environment.torchaudio_guard(),
    ):
        raise OSError(LIBRARY_ERROR)
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(OSError, match="disk full"), environment.torchaudio_guard():
        raise OSError("disk full")


@pytest.mark.skipif(environment.installed_version("torchaudio") is None, reason="torchaudio is not installed")
def test_broken_torchaudio_gives_the_clear_message_through_the_public_api(tmp_path):
    """A torchaudio whose library fails to load, as a mismatched wheel does, shadowing the installed one: the
    public API and the CLI name the pair instead of failing deep inside transformers."""
    fake = tmp_path / "torchaudio"
    fake.mkdir()
    (fake / "__init__.py").write_text(f"raise OSError({LIBRARY_ERROR!r})\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    script = textwrap.dedent(
        """
        import hf_squareloss
        try:
            hf_squareloss.SquareLossTrainer
        except ImportError as err:
            print("ImportError:", err)
        """
    )
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "ImportError: torchaudio" in run.stdout and "cannot load with the installed torch" in run.stdout
    cli = subprocess.run(
        [sys.executable, "-m", "hf_squareloss.cli", "env"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 1
    assert "torchaudio loads: NO" in cli.stdout and "pip install 'torch==" in cli.stdout


def test_constraints_hold_the_tested_pair_and_satisfy_the_ranges():
    pins = _constraints()
    tested_torch, tested_audio = environment.TESTED_TORCH_PAIR
    assert pins["torch"] == tested_torch and pins["torchaudio"] == tested_audio
    assert environment.TORCHAUDIO_LOADS_WITH[tested_audio] == tested_torch
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in ("asr", "dev"):
        requirements += project["optional-dependencies"][extra]
    for line in requirements:
        requirement = Requirement(line)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"constraints.txt has no pin for {requirement.name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (line, pins[name])


def test_constraints_are_what_is_installed_here():
    """The tests run on the tested set: a drift means constraints.txt no longer says what CI tested."""
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        pytest.skip("only CI installs exactly constraints.txt")
    pins = _constraints()
    for name in (
        "torch",
        "torchaudio",
        "transformers",
        "datasets",
        "accelerate",
        "evaluate",
        "huggingface-hub",
    ):
        installed = importlib.metadata.version(name).split("+", 1)[0]
        assert installed == pins[name], f"{name} {installed} installed, constraints.txt says {pins[name]}"
