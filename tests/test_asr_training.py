"""Training runs of recipes/asr: a short AN4 training on the real data whose loss improves (and that resumes from
its checkpoint), one epoch of the TIMIT, WSJ and LibriSpeech recipes on generated trees, a 2-process CPU DDP run
under torchrun, and the yesno CTC smoke test on the real recordings.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_asr_prepare import (
    RECIPES,
    load_recipe_module,
    write_an4_tree,
    write_librispeech_tree,
    write_timit_tree,
    write_wsj_tree,
)

pytestmark = pytest.mark.asr

# a model small enough to train for a few steps in seconds; the recipes' YAML stays untouched otherwise
TINY = [
    "--d_model=32",
    "--nhead=2",
    "--num_encoder_layers=1",
    "--num_decoder_layers=1",
    "--d_ffn=64",
    "--beam_size=2",
    "--noprogressbar",
]


def train_losses(train_log: Path) -> list[float]:
    """Epoch-level training losses from SpeechBrain's train_log.txt."""
    return [float(v) for v in re.findall(r"train loss: ([0-9.e+-]+)", train_log.read_text())]


def an4_subset(shared_an4: Path, root: Path, speakers: list[str]) -> Path:
    """An AN4 tree with only ``speakers``: the transcription and fileids filtered, the audio symlinked."""
    (root / "etc").mkdir(parents=True)
    (root / "wav" / "an4_clstk").mkdir(parents=True)
    lines = (shared_an4 / "etc" / "an4_train.transcription").read_text().splitlines()
    ids = (shared_an4 / "etc" / "an4_train.fileids").read_text().splitlines()
    kept = [(line, fid) for line, fid in zip(lines, ids, strict=True) if fid.split("/")[1] in speakers]
    (root / "etc" / "an4_train.transcription").write_text("\n".join(line for line, _ in kept) + "\n")
    (root / "etc" / "an4_train.fileids").write_text("\n".join(fid for _, fid in kept) + "\n")
    for speaker in speakers:
        (root / "wav" / "an4_clstk" / speaker).symlink_to(shared_an4 / "wav" / "an4_clstk" / speaker)
    return root


@pytest.mark.slow
def test_an4_recipe_trains_improves_and_resumes(shared_data, tmp_path):
    """4 real AN4 speakers for training, 2 held out: the training loss goes down over 3 epochs, results.json holds
    the figures, and a second call with more epochs resumes from the checkpoint instead of starting again."""
    speakers = ["fash", "fbbh", "fclc", "mcen", "mcfl", "mcrt"]
    root = an4_subset(shared_data("an4"), tmp_path / "an4", speakers)
    train = load_recipe_module("an4", "train")
    out = tmp_path / "run"
    argv = [
        str(RECIPES / "an4" / "hparams" / "an4.yaml"),
        f"--data_folder={root}",
        f"--output_folder={out}",
        "--valid_speakers_per_gender=1",
        "--number_of_epochs=3",
        "--warmup_steps=5",
        "--lr=0.003",
        "--train_dataloader_opts={max_batch_length: 12.0, num_buckets: 2, num_workers: 0}",
        *TINY,
    ]
    results = train.main(argv)
    losses = train_losses(out / "train_log.txt")
    assert len(losses) == 3
    assert losses[-1] < losses[0]
    assert results["loss"]["loss_type"] == "square" and results["loss"]["M"] == 15.0
    for key in ("valid_greedy_wer", "valid_greedy_cer", "valid_wer", "valid_cer", "score_scale"):
        assert key in results, key
    assert "test_wer" not in results  # no test part in this tree
    assert (out / "valid_hypotheses.txt").is_file()

    # the validation curve: every epoch's loss, the greedy WER where it decodes (every 3rd epoch and the last)
    assert [h["epoch"] for h in results["history"]] == [1.0, 2.0, 3.0]
    assert [("eval_wer" in h) for h in results["history"]] == [False, False, True]
    assert results["converged"] is None  # no decoded epoch before the last quarter (after epoch 2.25)

    results = train.main([*argv[:4], "--number_of_epochs=4", *argv[5:]])
    assert len(train_losses(out / "train_log.txt")) == 4  # epochs 1-3 were not run again
    assert results["epochs"] == 4
    history = {h["epoch"]: h for h in results["history"]}
    assert sorted(history) == [1.0, 2.0, 3.0, 4.0]  # the resumed run kept the first three
    # the rule on the greedy WER (percent, lower is better, tolerance 0.5): epoch 4 against epoch 3
    gain = history[3.0]["eval_wer"] - history[4.0]["eval_wer"]
    assert results["converged"] is (gain <= 0.5)
    assert results["convergence"]["metric"] == "eval_wer" and results["convergence"]["tolerance"] == 0.5


@pytest.mark.slow
@pytest.mark.parametrize(
    ("loss_type", "extra"),
    [
        ("ce", []),
        ("tce", []),
        ("square", ["--calibration_max_steps=7"]),  # fewer tokens than the validation set has: a sample
        ("square", ["--calibrate_score_scale=False", "--score_scale=15"]),
    ],
)
def test_an4_recipe_with_test_part_writes_test_figures(tmp_path, loss_type, extra):
    train = load_recipe_module("an4", "train")
    speakers = ["faaa", "fbbb", "maaa", "mbbb"]
    root = write_an4_tree(tmp_path / "an4", speakers, 4, test_speakers=["fzzz"])
    out = tmp_path / "run"
    results = train.main(
        [
            str(RECIPES / "an4" / "hparams" / "an4.yaml"),
            f"--data_folder={root}",
            f"--output_folder={out}",
            f"--loss_type={loss_type}",
            "--ctc_alpha=0.5",
            "--valid_speakers_per_gender=1",
            "--number_of_epochs=1",
            *TINY,
            *extra,
        ]
    )
    assert results["loss"]["loss_type"] == loss_type
    assert results["ctc_alpha"] == 0.5
    assert results["test_set"] == "test"
    assert results["test_wer"] >= 0 and results["test_cer"] >= 0
    assert "valid_wer" in results and "valid_greedy_wer" in results
    check_model_card(out, results)
    log = (out / "log.txt").read_text()
    if loss_type == "square":
        # fitted once on the validation set (or fixed), then used for the valid and the test beam search alike
        scales = re.findall(r"beam search on (\w+): decoder score sharpness ([0-9.e+-]+)", log)
        assert [name for name, _ in scales] == ["valid", "test"]
        assert all(float(v) == pytest.approx(results["score_scale"], rel=1e-3) for _, v in scales)
        fixed = "--score_scale=15" in extra
        assert results["score_scale_source"] == ("fixed" if fixed else "fitted on valid")
        if fixed:
            assert results["score_scale"] == 15.0
    else:
        assert "score_scale" not in results  # log-softmax outputs need no calibration
        assert "decoder score sharpness" not in log
    # token-level calibration of the attention decoder on the validation set (teacher forcing)
    assert 0.0 <= results["valid_token_ece"] <= 1.0 and results["valid_token_nll"] > 0
    assert 0.0 <= results["valid_token_brier"] <= 2.0 and results["valid_token_count"] > 0
    fitted = loss_type == "square" and "--score_scale=15" not in extra
    assert ("valid_token_ece_uncalibrated" in results) == fitted
    if fitted:  # the sharpness minimises the NLL of these very tokens
        assert results["valid_token_nll"] <= results["valid_token_nll_uncalibrated"] + 1e-4
        assert results["valid_token_count"] == 7  # calibration_max_steps


@pytest.mark.slow
def test_timit_recipe_one_epoch(tmp_path):
    train = load_recipe_module("timit", "train")
    root = write_timit_tree(tmp_path / "TIMIT", upper=True)
    results = train.main(
        [
            str(RECIPES / "timit" / "hparams" / "timit.yaml"),
            f"--data_folder={root}",
            f"--output_folder={tmp_path / 'run'}",
            "--number_of_epochs=1",
            "--train_dataloader_opts={max_batch_length: 2.0, num_buckets: 1, num_workers: 0}",
            *TINY,
        ]
    )
    assert results["output_neurons"] == 42 and results["units"] == "phone"
    assert results["loss"] == {
        "loss_type": "square",
        "k": 1.0,
        "M": 15.0,
        "source": "preset timit (Hui & Belkin)",
        "sources": {"k": "preset timit (Hui & Belkin)", "M": "preset timit (Hui & Belkin)"},
    }
    assert "test_per" in results and "valid_greedy_per" in results and "test_cer" not in results


@pytest.mark.slow
def test_wsj_recipe_one_epoch(tmp_path, monkeypatch):
    train = load_recipe_module("wsj", "train")
    root = write_wsj_tree(tmp_path / "wsj", compressed=False)
    results = train.main(
        [
            str(RECIPES / "wsj" / "hparams" / "wsj.yaml"),
            f"--data_folder={root}",
            f"--output_folder={tmp_path / 'run'}",
            "--number_of_epochs=1",
            "--loss_type=tce",
            "--alpha=1.0",
            *TINY,
        ]
    )
    assert results["loss"]["alpha"] == 1.0 and results["output_neurons"] == 31
    assert "test_wer" in results and "test_cer" in results


@pytest.mark.slow
def test_librispeech_recipe_one_epoch(tmp_path):
    train = load_recipe_module("librispeech", "train")
    root = write_librispeech_tree(
        tmp_path / "LibriSpeech",
        {
            "train-clean-100": [(19, 198, 4), (26, 495, 4)],
            "dev-clean": [(84, 121, 2)],
            "test-clean": [(61, 70968, 2)],
            "test-other": [(367, 130732, 2)],
        },
    )
    out = tmp_path / "run"
    results = train.main(
        [
            str(RECIPES / "librispeech" / "hparams" / "librispeech.yaml"),
            f"--data_folder={root}",
            f"--output_folder={out}",
            "--train_splits=[train-clean-100]",
            "--vocab_size=34",
            "--number_of_epochs=1",
            *TINY,
        ]
    )
    assert (out / "tokenizer" / "unigram34.model").is_file()
    assert results["loss"]["k"] == 15.0 and results["loss"]["M"] == 30.0
    assert results["test_set"] == "test-clean"
    assert results["test_wer"] == results["test-clean_wer"]
    assert "test-other_wer" in results and "test-other_cer" in results


@pytest.mark.slow
@pytest.mark.parametrize("loss_type", ["square", "tce"])
def test_librispeech_recipe_decoder_loss_from_hidden_states(tmp_path, loss_type):
    """The YAML switch seq_loss_from_hidden_states: one epoch on the generated corpus trains and evaluates."""
    train = load_recipe_module("librispeech", "train")
    root = write_librispeech_tree(
        tmp_path / "LibriSpeech",
        {
            "train-clean-100": [(19, 198, 4), (26, 495, 4)],
            "dev-clean": [(84, 121, 2)],
            "test-clean": [(61, 70968, 2)],
            "test-other": [(367, 130732, 2)],
        },
    )
    out = tmp_path / "run"
    results = train.main(
        [
            str(RECIPES / "librispeech" / "hparams" / "librispeech.yaml"),
            f"--data_folder={root}",
            f"--output_folder={out}",
            "--train_splits=[train-clean-100]",
            "--vocab_size=34",
            "--number_of_epochs=1",
            f"--loss_type={loss_type}",
            "--seq_loss_from_hidden_states=True",
            *TINY,
        ]
    )
    assert results["hyperparameters"]["seq_loss_from_hidden_states"] is True
    assert results["loss"]["loss_type"] == loss_type
    losses = train_losses(out / "train_log.txt")
    assert len(losses) == 1 and losses[0] > 0
    assert "test_wer" in results and "test-other_wer" in results


@pytest.mark.slow
def test_two_process_cpu_ddp_run(tmp_path):
    """torchrun with 2 CPU processes (gloo is chosen automatically without GPUs): both train on half the batches,
    the main process writes results.json, and the run ends cleanly."""
    root = write_an4_tree(tmp_path / "an4", ["faaa", "fbbb", "maaa", "mbbb"], 4)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(RECIPES / "an4" / "train.py"),
        str(RECIPES / "an4" / "hparams" / "an4.yaml"),
        f"--data_folder={root}",
        f"--output_folder={out}",
        "--valid_speakers_per_gender=1",
        "--number_of_epochs=1",
        # several batches per process (SpeechBrain's DistributedSamplerWrapper mishandles a shard of one batch)
        "--train_dataloader_opts={max_batch_length: 1.5, num_buckets: 2, num_workers: 0}",
        *TINY,
    ]
    # own process group, so that a hung run (e.g. a rendezvous that never completes) is ended with its workers
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("the 2-process run did not finish within 300 s")
    assert process.returncode == 0, stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["world_size"] == 2
    assert "valid_wer" in results and "valid_greedy_wer" in results
    assert len(train_losses(out / "train_log.txt")) == 1


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_yesno_ctc_smoke(shared_data, alpha):
    """Seconds of (Tamed) CTC training on the real yesno recordings: the loss falls and held-out utterances are
    recognised."""
    smoke = load_recipe_module("yesno", "ctc_smoke")
    result = smoke.run(shared_data("yesno") / "waves_yesno", alpha=alpha)
    assert result["losses"][-1] < 0.5 * result["losses"][0]
    assert result["test_token_error_rate"] < 15.0


def check_model_card(out, results) -> None:
    """The run's README.md: strict metadata, every error rate of results.json, the loss and its citations."""
    from huggingface_hub import ModelCard

    text = (out / "README.md").read_text(encoding="utf-8")
    card = ModelCard(text, ignore_metadata_errors=False)
    meta = card.data.to_dict()
    assert meta["library_name"] == "speechbrain"
    assert meta["pipeline_tag"] == "automatic-speech-recognition"
    assert {"hf-squareloss", results["loss"]["loss_type"], "an4"} <= set(meta["tags"])
    assert meta["hf_squareloss"]["loss_type"] == results["loss"]["loss_type"]
    assert meta["hf_squareloss"].get("M") == results["loss"].get("M")
    # every error rate of results.json (<set>_wer, <set>_cer, valid_greedy_*) and nothing else, in percent
    expected = set()
    for key, value in results.items():
        name, _, metric = key.rpartition("_")
        if metric in ("wer", "cer") and isinstance(value, float | int):
            split = name.removesuffix("_greedy").removeprefix("last_")
            how = ("greedy" in name, name.startswith("last_"))
            expected.add((metric, split, how, round(float(value), 6)))
    seen = {
        (
            r.metric_type,
            r.dataset_split,
            ("greedy" in r.metric_name, "last epoch" in r.metric_name),
            round(float(r.metric_value), 6),
        )
        for r in card.data.eval_results
    }
    assert seen == expected
    assert "martinez2018taming" in text  # ctc_alpha = 0.5: Tamed CTC is cited
    if results["loss"]["loss_type"] == "square":
        assert "hui2021evaluation" in text and "sharpness" in text
    # the same card again from the folder alone, through the command line
    from hf_squareloss.cli import main as cli_main

    (out / "README.md").unlink()
    assert cli_main(["card", str(out)]) == 0
    assert (out / "README.md").read_text(encoding="utf-8") == text
