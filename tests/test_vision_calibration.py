"""Image recipe with --calibrate: the temperature fitted on the validation split, saved with the model, and the
calibration metrics of the served probabilities on the validation and test splits, recomputed here from the saved
model, the image files and the definitions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import test_vision_recipe
import torch
import torch.nn.functional as F
from test_calibration import _brier_by_definition, _ece_by_definition
from test_vision_recipe import _read, argv_for

from hf_squareloss.vision.run import main

digits = test_vision_recipe.digits  # the image folder of scikit-learn's digits, once per module


def _logits(out: Path, files: list) -> tuple[torch.Tensor, torch.Tensor]:
    """The saved model's logits on the image files, normalised with the statistics the run recorded."""
    from PIL import Image
    from transformers import AutoModelForImageClassification

    images = _read(out / "dataset.json")["images"]
    pixels = np.stack([np.asarray(Image.open(p), dtype=np.float32) / 255 for p, _ in files])
    x = torch.from_numpy((pixels - images["mean"][0]) / images["std"][0])[:, None]
    model = AutoModelForImageClassification.from_pretrained(out).eval()
    with torch.no_grad():
        logits = model(x).logits.double()
    return logits, torch.tensor([label for _, label in files])


@pytest.mark.parametrize("loss_type", ["square", "tce"])
def test_calibrate_fits_on_validation_saves_and_scores_both_splits(digits, tmp_path, loss_type) -> None:
    root, written = digits
    out = tmp_path / "run"
    summary = main(argv_for(root, out, "--loss_type", loss_type, "--num_train_epochs", "2", "--calibrate"))
    record = _read(out / "config.json")["hf_squareloss"]
    temperature = record["temperature"]
    assert summary["calibration"]["temperature"] == temperature
    assert summary["calibration"]["fitted_on"] == "validation"
    m = record.get("M", 1.0) if loss_type == "square" else 1.0
    results = _read(out / "all_results.json")
    for split, prefix in (("validation", "eval"), ("test", "test")):
        logits, labels = _logits(out, written[split])

        def nll(t: float, logits=logits, labels=labels) -> float:
            return float(F.cross_entropy(logits / (m * t), labels))

        if split == "validation" and summary["calibration"]["status"] == "fitted":
            assert nll(temperature) <= min(nll(temperature * 1.05), nll(temperature / 1.05))
        for suffix, t in (("", temperature), ("_uncalibrated", 1.0)):
            probs = torch.softmax(logits / (m * t), -1).numpy()
            assert results[f"{prefix}_nll{suffix}"] == pytest.approx(nll(t), rel=1e-4)
            assert results[f"{prefix}_ece{suffix}"] == pytest.approx(
                _ece_by_definition(probs, labels.numpy()), abs=1e-4
            )
            assert results[f"{prefix}_brier{suffix}"] == pytest.approx(
                _brier_by_definition(probs, labels.numpy()), rel=1e-4
            )
        accuracy = float((logits.argmax(-1) == labels).double().mean())
        assert results[f"{prefix}_accuracy"] == pytest.approx(accuracy)  # a temperature changes no prediction
    assert results["eval_nll"] <= results["eval_nll_uncalibrated"] + 1e-9
    assert (out / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the summary and the card say what the saved model serves: calibrated probabilities, with this temperature
    assert summary["loss"]["temperature"] == temperature
    assert f"**Calibrated**: a temperature T = {temperature:.4g}" in (out / "README.md").read_text()


def test_without_calibrate_the_metrics_are_at_t_one(digits, tmp_path) -> None:
    root, written = digits
    out = tmp_path / "run"
    main(argv_for(root, out, "--loss_type", "ce"))
    assert "temperature" not in _read(out / "config.json")["hf_squareloss"]
    results = _read(out / "all_results.json")
    assert not any(k.endswith("_uncalibrated") for k in results)
    logits, labels = _logits(out, written["validation"])
    probs = torch.softmax(logits, -1).numpy()
    assert results["eval_nll"] == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-4)
    assert results["eval_ece"] == pytest.approx(_ece_by_definition(probs, labels.numpy()), abs=1e-4)
    history = _read(out / "trainer_state.json")["log_history"]
    assert any("eval_ece" in entry for entry in history)  # also in the per-epoch evaluations
    assert (out / "reliability.png").is_file()


def test_a_calibrated_model_evaluated_again_keeps_its_temperature(digits, tmp_path) -> None:
    root, written = digits
    trained = tmp_path / "trained"
    main(argv_for(root, trained, "--loss_type", "square", "--calibrate"))
    temperature = _read(trained / "config.json")["hf_squareloss"]["temperature"]
    again = tmp_path / "again"
    argv = argv_for(root, again, "--model_name_or_path", str(trained))
    argv.remove("--model_type")
    argv.remove("resnet20")
    argv.remove("--do_train")
    main(argv)
    m = _read(trained / "config.json")["hf_squareloss"].get("M", 1.0)
    logits, labels = _logits(trained, written["validation"])
    results = _read(again / "all_results.json")
    assert results["eval_nll"] == pytest.approx(
        float(F.cross_entropy(logits / (m * temperature), labels)), rel=1e-4
    )


def test_calibrate_needs_do_eval(digits, tmp_path) -> None:
    root, _ = digits
    argv = argv_for(root, tmp_path / "run", "--calibrate")
    argv.remove("--do_eval")
    with pytest.raises(ValueError, match=r"--calibrate .* add --do_eval"):
        main(argv)
    assert not (tmp_path / "run").exists()
