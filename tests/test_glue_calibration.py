"""GLUE recipe with --calibrate: the temperature fitted on the validation set, saved with the model, and the
calibration metrics of the served probabilities, recomputed here from the saved model and the definitions."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_calibration import _brier_by_definition, _ece_by_definition
from test_glue_recipe import build_tiny_model, recipe_argv

from hf_squareloss.glue.run import main


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, shared_model) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"), shared_model("paraphrase-MiniLM-L3-v2"))


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _dev_logits(out: Path, folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with open(folder / "dev.tsv", encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[1:25]
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    batch = tokenizer(
        [r[3] for r in rows],
        [r[4] for r in rows],
        truncation=True,
        max_length=32,
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        logits = model(**batch).logits.double()
    return logits, torch.tensor([int(r[0]) for r in rows])


@pytest.mark.parametrize("loss_type", ["square", "ce"])
def test_calibrate_fits_saves_and_reports(tiny_model, shared_data, tmp_path, loss_type: str) -> None:
    folder = shared_data("glue/MRPC")
    out = tmp_path / "run"
    summary = main(
        recipe_argv(
            tiny_model,
            "mrpc",
            folder,
            out,
            "--loss_type",
            loss_type,
            "--num_train_epochs",
            "2",
            "--calibrate",
        )
    )
    record = _read(out / "config.json")["hf_squareloss"]
    temperature = record["temperature"]
    assert (
        summary["calibration"]["temperature"] == temperature
        and summary["calibration"]["fitted_on"] == "validation"
    )
    m = record.get("M", 1.0) if loss_type == "square" else 1.0
    logits, labels = _dev_logits(out, folder)
    results = _read(out / "all_results.json")

    def nll(t: float) -> float:
        return float(F.cross_entropy(logits / (m * t), labels))

    if summary["calibration"]["status"] == "fitted":  # the NLL is at its minimum on the validation set
        assert nll(temperature) <= min(nll(temperature * 1.05), nll(temperature / 1.05))
    for suffix, t in (("", temperature), ("_uncalibrated", 1.0)):
        probs = torch.softmax(logits / (m * t), -1)
        assert results[f"eval_nll{suffix}"] == pytest.approx(nll(t), rel=1e-4)
        assert results[f"eval_ece{suffix}"] == pytest.approx(
            _ece_by_definition(probs.numpy(), labels.numpy()), abs=1e-4
        )
        assert results[f"eval_brier{suffix}"] == pytest.approx(
            _brier_by_definition(probs.numpy(), labels.numpy()), rel=1e-4
        )
    assert results["eval_nll"] <= results["eval_nll_uncalibrated"] + 1e-9
    assert _read(out / "run_summary.json")["eval_metrics"]["eval_ece"] == results["eval_ece"]
    assert math.isfinite(summary["calibration"]["nll"])
    assert (out / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["loss"]["temperature"] == temperature
    assert f"**Calibrated**: a temperature T = {temperature:.4g}" in (out / "README.md").read_text()


def test_without_calibrate_the_metrics_are_at_t_one(tiny_model, shared_data, tmp_path) -> None:
    folder = shared_data("glue/MRPC")
    out = tmp_path / "run"
    main(recipe_argv(tiny_model, "mrpc", folder, out, "--loss_type", "tce"))
    assert "temperature" not in _read(out / "config.json")["hf_squareloss"]
    results = _read(out / "all_results.json")
    assert not any(k.endswith("_uncalibrated") for k in results)
    logits, labels = _dev_logits(out, folder)
    assert results["eval_nll"] == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-4)
    history = _read(out / "trainer_state.json")["log_history"]
    assert any("eval_ece" in entry for entry in history)  # also in the per-epoch evaluations
    assert (out / "reliability.png").is_file()


def test_calibrate_needs_do_eval(tiny_model, shared_data, tmp_path) -> None:
    argv = recipe_argv(tiny_model, "mrpc", shared_data("glue/MRPC"), tmp_path / "run", "--calibrate")
    argv.remove("--do_eval")
    with pytest.raises(ValueError, match=r"--calibrate .* add --do_eval"):
        main(argv)
