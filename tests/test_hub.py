"""Model cards and pushes to the Hub, end to end: a real recipe run writes its card, ``--push_to_hub`` sends the
folder to a Hub stand-in on 127.0.0.1 (``tests/hub_server.py``), failures say what to do and lose nothing, and a
comparison sweep gets its own card."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import serve
from test_glue_recipe import build_tiny_model, recipe_argv

from hf_squareloss.cli import main as cli_main
from hf_squareloss.glue.run import main as run_recipe

TOKEN = "hf_test_token"
BASE_MODEL = "sentence-transformers/paraphrase-MiniLM-L3-v2"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, shared_model) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"), shared_model("paraphrase-MiniLM-L3-v2"))


@pytest.fixture(scope="module")
def hub():
    server, _ = serve(TOKEN)
    yield server
    server.shutdown()


def _argv(model: Path, data, out: Path, *extra: str) -> list[str]:
    return recipe_argv(
        model,
        "mrpc",
        data("glue/MRPC"),
        out,
        "--loss_type",
        "square",
        "--square_m",
        "2",
        "--label_noise",
        "0.25",
        "--noise_seed",
        "3",
        "--base_model_id",
        BASE_MODEL,
        *extra,
    )


@pytest.fixture(scope="module")
def run_dir(tiny_model, shared_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("card") / "run"
    run_recipe(_argv(tiny_model, shared_data, out))
    return out


def _env(tmp_path: Path, endpoint: str, token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HUB_DISABLE_XET="1",
        HF_HUB_OFFLINE="0",
        HF_HOME=str(tmp_path / "hf_home"),  # no saved login
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def _run(module: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """``python -m module args`` in a fresh process (huggingface_hub reads its endpoint at import)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args], env=env, capture_output=True, text=True, timeout=600
    )


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _card_metadata(text: str) -> dict:
    from huggingface_hub import ModelCard

    return ModelCard(text, ignore_metadata_errors=False).data.to_dict()


# ---- the card of a run ------------------------------------------------------------------------------------------
def test_run_card_says_how_the_model_was_trained(run_dir: Path) -> None:
    text = (run_dir / "README.md").read_text(encoding="utf-8")
    meta = _card_metadata(text)
    assert meta["library_name"] == "transformers"
    assert meta["base_model"] == BASE_MODEL
    assert meta["pipeline_tag"] == "text-classification"
    assert meta["datasets"] == ["nyu-mll/glue"]
    assert {"hf-squareloss", "square", "label-noise"} <= set(meta["tags"])

    # every evaluation metric of the run, with its value, in the model-index
    evals = json.loads((run_dir / "eval_results.json").read_text())
    (entry,) = meta["model-index"]
    (result,) = entry["results"]
    assert result["dataset"]["config"] == "mrpc" and result["dataset"]["split"] == "validation"
    card_metrics = {m["type"]: m["value"] for m in result["metrics"]}
    for key in ("accuracy", "f1"):
        assert card_metrics[key] == pytest.approx(evals[f"eval_{key}"], abs=1e-12)

    # the loss block: what was used, including the noise actually realised
    block = meta["hf_squareloss"]
    assert block["loss_type"] == "square" and block["k"] == 1.0 and block["M"] == 2.0
    noise = json.loads((run_dir / "label_noise.json").read_text())
    assert block["label_noise"]["rate"] == 0.25 and block["label_noise"]["seed"] == 3
    assert block["label_noise"]["realised_rate"] == pytest.approx(noise["realised_rate"])
    assert block["label_noise"]["num_flipped"] == len(noise["flipped_idx"]) > 0

    # the body: formula, how to read the outputs, hyper-parameters, citation of the loss's paper only
    assert 'function_to_apply="none"' in text
    assert "(f_y - M)^2" in text or "(f_y - M)" in text
    assert "learning_rate" in text
    assert "@inproceedings{hui2021evaluation" in text
    assert "martinez2018taming" not in text


def test_card_command_rewrites_the_same_card(run_dir: Path, tmp_path: Path) -> None:
    before = (run_dir / "README.md").read_text(encoding="utf-8")
    assert cli_main(["card", str(run_dir)]) == 0
    after = (run_dir / "README.md").read_text(encoding="utf-8")
    assert _card_metadata(after) == _card_metadata(before)
    assert cli_main(["card", str(tmp_path)]) == 2  # neither a run nor a sweep


# ---- pushes -----------------------------------------------------------------------------------------------------
def test_recipe_pushes_the_finished_run(hub, tiny_model, shared_data, tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = _argv(tiny_model, shared_data, out, "--push_to_hub", "--hub_model_id", "tester/mrpc-square")
    argv += ["--hub_private_repo", "true", "--save_strategy", "epoch", "--keep_checkpoints", "true"]
    commits = hub.commits
    proc = _run("hf_squareloss.glue.run", argv, _env(tmp_path, hub.url, TOKEN))
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = hub.repos["tester/mrpc-square"]
    assert hub.private["tester/mrpc-square"] is True
    assert hub.commits == commits + 1  # one push, when finished: none by the Trainer during training
    # the weights, config, tokenizer and card arrived byte for byte; checkpoints stayed local
    for name in ("model.safetensors", "config.json", "tokenizer.json", "README.md", "eval_results.json"):
        assert files[name] == (out / name).read_bytes(), name
    assert any(out.glob("checkpoint-*"))
    assert not any(path.startswith("checkpoint-") for path in files)
    assert not any(path.endswith("training_args.bin") for path in files)
    config = json.loads(files["config.json"])
    assert config["hf_squareloss"]["loss_type"] == "square" and config["hf_squareloss"]["M"] == 2.0
    assert _card_metadata(files["README.md"].decode())["hf_squareloss"]["loss_type"] == "square"
    assert "pushed" in proc.stdout


def test_unreachable_hub_loses_nothing_and_the_push_can_be_retried(
    hub, tiny_model, shared_data, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    dead = f"http://127.0.0.1:{_closed_port()}"
    argv = _argv(tiny_model, shared_data, out, "--push_to_hub", "--hub_model_id", "tester/retry")
    proc = _run("hf_squareloss.glue.run", argv, _env(tmp_path, dead, TOKEN))
    assert proc.returncode == 1
    assert "unreachable" in proc.stderr and f"hf-squareloss push {out} --repo-id tester/retry" in proc.stderr
    for name in ("run_summary.json", "model.safetensors", "README.md", "eval_results.json"):
        assert (out / name).is_file(), name
    assert "tester/retry" not in hub.repos

    before = _digest(out)
    proc = _run(
        "hf_squareloss.cli", ["push", str(out), "--repo-id", "tester/retry"], _env(tmp_path, hub.url, TOKEN)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert hub.repos["tester/retry"]["model.safetensors"] == (out / "model.safetensors").read_bytes()
    assert _digest(out) == before


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no token", "no Hugging Face token"),
        ("wrong token", "the token was refused (401)"),
        ("unreachable", "is unreachable"),
        ("offline", "HF_HUB_OFFLINE is set"),
        ("bad repo id", "repo id must look like"),
    ],
)
def test_push_failures_say_what_to_do(hub, run_dir: Path, tmp_path: Path, case: str, message: str) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}" if case == "unreachable" else hub.url
    token = {"no token": None, "wrong token": "hf_wrong"}.get(case, TOKEN)
    env = _env(tmp_path, endpoint, token)
    if case == "offline":
        env["HF_HUB_OFFLINE"] = "1"
    repo = "a/b/c" if case == "bad repo id" else "tester/failing"
    before = _digest(run_dir)
    proc = _run("hf_squareloss.cli", ["push", str(run_dir), "--repo-id", repo], env)
    assert proc.returncode == 1
    assert message in proc.stderr, proc.stderr
    if case != "bad repo id":
        assert "Nothing local was changed" in proc.stderr
    assert _digest(run_dir) == before
    assert "tester/failing" not in hub.repos


def test_push_refuses_a_folder_without_card(hub, tmp_path: Path) -> None:
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    proc = _run(
        "hf_squareloss.cli", ["push", str(folder), "--repo-id", "tester/bare"], _env(tmp_path, hub.url, TOKEN)
    )
    assert proc.returncode == 1
    assert "neither a finished run folder" in proc.stderr
    assert "tester/bare" not in hub.repos


# ---- the card of a sweep ----------------------------------------------------------------------------------------
def test_sweep_card(hub, tiny_model, shared_data, tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    argv = ["compare", "--output_dir", str(root), "--model_name_or_path", str(tiny_model)]
    argv += ["--base_model_id", BASE_MODEL, "--tasks", "mrpc", "--losses", "ce", "tce", "--seeds", "0", "1"]
    argv += ["--noise", "0", "--data_root", str(shared_data("glue")), "--max_train_samples", "48"]
    argv += ["--max_eval_samples", "24", "--", "--max_seq_length", "32", "--num_train_epochs", "1"]
    argv += ["--per_device_train_batch_size", "16", "--learning_rate", "1e-3", "--use_cpu"]
    assert cli_main(argv) == 0
    assert cli_main(["card", str(root)]) == 0
    text = (root / "README.md").read_text(encoding="utf-8")
    meta = _card_metadata(text)
    assert meta["base_model"] == BASE_MODEL
    assert {"hf-squareloss", "ce", "tce"} <= set(meta["tags"])

    # per-seed accuracies of every run, and mean +- std per loss, as the runs wrote them
    accuracies: dict[str, list[float]] = {}
    for loss in ("ce", "tce"):
        for seed in (0, 1):
            run = root / "mrpc" / "early_stopping" / loss / "noise0" / f"seed{seed}"
            accuracies.setdefault(loss, []).append(
                json.loads((run / "eval_results.json").read_text())["eval_accuracy"]
            )
    for loss, values in accuracies.items():
        mean = 100 * sum(values) / len(values)
        assert f"{mean:.2f}" in text, (loss, mean)
        for value in values:
            assert f"{100 * value:.2f}" in text
    for png in ("accuracy_vs_noise.png", "learning_curves.png", "seed_spread.png"):
        assert (root / png).is_file() and f"]({png})" in text
    assert "@inproceedings{martinez2018taming" in text

    proc = _run(
        "hf_squareloss.cli", ["push", str(root), "--repo-id", "tester/sweep"], _env(tmp_path, hub.url, TOKEN)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = hub.repos["tester/sweep"]
    assert files["README.md"] == (root / "README.md").read_bytes()
    assert "results.csv" in files and "seed_spread.png" in files
