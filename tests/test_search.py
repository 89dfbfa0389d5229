"""``Trainer.hyperparameter_search`` over the loss: every trial trains with its own loss (optuna and Ray Tune), its
model records the values with source ``search``, conditional spaces do not leak, bad values fail by name."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hf_squareloss as hsl
from hf_squareloss import SquareLossTrainer
from hf_squareloss.search import default_objective, loss_search_space

optuna = pytest.importorskip("optuna")

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
import search_data  # noqa: E402

_model_init = search_data.model_init
_args = search_data.args


@pytest.fixture(scope="module")
def sst2(shared_model, shared_data):
    return search_data.sst2(shared_data("glue/SST-2") / "train.tsv", shared_model("paraphrase-MiniLM-L3-v2"))


def _standalone(out, data, **loss) -> dict:
    trainer = search_data.trainer(out, data, **loss)
    trainer.train()
    return trainer.evaluate()


def _records(out: Path) -> list[dict]:
    return [
        json.loads(path.read_text())["hf_squareloss"]
        for path in sorted(out.glob("**/checkpoint-3/config.json"))
    ]


def test_each_optuna_trial_trains_with_its_own_loss(tmp_path, sst2):
    out = tmp_path / "search"
    trainer = SquareLossTrainer(
        model_init=_model_init, args=_args(out, loss_type="tce"), train_dataset=sst2, eval_dataset=sst2
    )
    seen: list[dict] = []

    def objective(metrics):
        seen.append(metrics)
        return default_objective(metrics)

    sampler = optuna.samplers.GridSampler({"tce_alpha": [0.5, 3.0]})
    best = trainer.hyperparameter_search(
        hp_space=lambda t: {"tce_alpha": t.suggest_categorical("tce_alpha", [0.5, 3.0])},
        compute_objective=objective,
        backend="optuna",
        n_trials=2,
        direction="minimize",
        sampler=sampler,
    )
    alphas = sorted(r["alpha"] for r in _records(out))
    assert alphas == [0.5, 3.0]
    for record in _records(out):
        assert record["sources"] == {"alpha": "search"} and record["source"] == "search"
    # each trial is the run a user would make with that alpha alone
    by_alpha = {m["eval_loss"]: m for m in seen}
    for alpha in (0.5, 3.0):
        alone = _standalone(tmp_path / f"alone{alpha}", sst2, loss_type="tce", tce_alpha=alpha)
        match = [m for m in seen if m["eval_nll"] == pytest.approx(alone["eval_nll"], rel=1e-6)]
        assert match and match[0]["eval_loss"] == pytest.approx(alone["eval_loss"], rel=1e-6)
    assert len(by_alpha) == 2  # the two trials differ
    assert best.objective == pytest.approx(min(m["eval_nll"] for m in seen))
    assert trainer.args.tce_alpha is None  # the arguments' loss settings are put back after the search


def test_a_conditional_space_does_not_carry_values_between_trials(tmp_path, sst2, caplog):
    out = tmp_path / "search"
    trials = [{"tce_alpha": 0.5}, {"loss_type": "gce", "gce_q": 0.3}, {"loss_type": "tce"}]
    trainer = SquareLossTrainer(
        model_init=_model_init, args=_args(out, loss_type="tce"), train_dataset=sst2, eval_dataset=sst2
    )
    with caplog.at_level(logging.INFO, logger="hf_squareloss.trainer"):
        trainer.hyperparameter_search(
            hp_space=lambda t: trials[t.number], backend="optuna", n_trials=3, direction="minimize"
        )
    records = {path.parent.parent.name: json.loads(path.read_text())["hf_squareloss"] for path in
               out.glob("run-*/checkpoint-3/config.json")}  # fmt: skip
    first, second, third = (records[f"run-{i}"] for i in range(3))
    assert (first["loss_type"], first["alpha"], first["sources"]) == ("tce", 0.5, {"alpha": "search"})
    assert (second["loss_type"], second["q"]) == ("gce", 0.3)
    assert second["sources"] == {"loss_type": "search", "q": "search"}
    # the third trial names only the loss: its alpha is the default, not the first trial's 0.5
    assert (third["loss_type"], third["alpha"]) == ("tce", 1.5)
    assert third["sources"] == {"loss_type": "search", "alpha": "default"}
    announced = [r.getMessage() for r in caplog.records if "trains with" in r.getMessage()]
    assert "loss_type from search" in announced[-1] and "alpha=1.5" in announced[-1]


def test_a_bad_trial_value_fails_with_the_fields_name(tmp_path, sst2):
    trainer = SquareLossTrainer(
        model_init=_model_init, args=_args(tmp_path, loss_type="tce"), train_dataset=sst2, eval_dataset=sst2
    )
    with pytest.raises(ValueError, match=r"--tce_alpha"):
        trainer.hyperparameter_search(hp_space=lambda t: {"tce_alpha": -1.0}, backend="optuna", n_trials=1)
    with pytest.raises(ValueError, match=r"unknown loss_type 'hinge'"):
        trainer.hyperparameter_search(hp_space=lambda t: {"loss_type": "hinge"}, backend="optuna", n_trials=1)


def test_a_trial_with_a_loss_the_head_refuses_fails_before_training(tmp_path):
    from test_heads import _ctc_model

    trainer = SquareLossTrainer(model_init=lambda: _ctc_model(), args=_args(tmp_path, loss_type="ce"))
    with pytest.raises(ValueError, match="loss_type='square' does not apply to the CTC head"):
        trainer.hyperparameter_search(
            hp_space=lambda t: {"loss_type": "square"}, backend="optuna", n_trials=1
        )


def test_searching_another_losss_field_is_warned(tmp_path, sst2, caplog):
    trainer = SquareLossTrainer(
        model_init=_model_init, args=_args(tmp_path, loss_type="tce"), train_dataset=sst2, eval_dataset=sst2
    )
    with caplog.at_level(logging.WARNING, logger="hf_squareloss.trainer"):
        trainer.hyperparameter_search(hp_space=lambda t: {"square_k": 2.0}, backend="optuna", n_trials=1)
    assert any("['square_k'], which loss_type='tce' does not have" in r.getMessage() for r in caplog.records)


def test_default_objective():
    base = {
        "eval_loss": 0.9,
        "eval_nll": 0.7,
        "eval_runtime": 1.0,
        "eval_samples_per_second": 3.0,
        "epoch": 1.0,
    }
    assert default_objective(base) == 0.7  # no compute_metrics: the NLL, not the training loss
    assert default_objective({**base, "eval_perplexity": 2.0}) == 0.7
    with_metrics = {**base, "eval_accuracy": 0.8, "eval_f1": 0.6, "eval_model_preparation_time": 0.01}
    assert default_objective(with_metrics) == pytest.approx(
        1.4
    )  # the user's metrics, as transformers sums them
    assert default_objective({"eval_loss": 0.9}) == 0.9
    with pytest.raises(ValueError, match="no objective"):
        default_objective({"epoch": 1.0})


def test_loss_search_space_comes_from_the_registry():
    space = loss_search_space(["square", "tce"], backend="optuna")
    values = space(optuna.trial.FixedTrial({"loss_type": "square", "square_k": 2.0, "square_m": 5.0}))
    assert values == {"loss_type": "square", "square_k": 2.0, "square_m": 5.0}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        values = space(trial)
        if values["loss_type"] == "tce":
            assert set(values) == {"loss_type", "tce_alpha"} and 0.0 <= values["tce_alpha"] <= 3.0
        else:
            assert set(values) == {"loss_type", "square_k", "square_m"}
            assert 1.0 <= values["square_k"] <= 30.0 and 1.0 <= values["square_m"] <= 30.0
        study.tell(trial, 0.0)
    single = loss_search_space("tce", ranges={"tce_alpha": (0.5, 2.0, False)})(
        optuna.trial.FixedTrial({"tce_alpha": 1.0})
    )
    assert single == {"tce_alpha": 1.0}
    with pytest.raises(ValueError, match="square_k"):
        loss_search_space("tce", ranges={"square_k": (1.0, 2.0, True)})
    with pytest.raises(ValueError, match="backend"):
        loss_search_space("tce", backend="wandb")


@pytest.mark.ray
@pytest.mark.slow
def test_each_ray_trial_trains_with_its_own_loss(tmp_path, sst2, shared_data, shared_model):
    pytest.importorskip("ray")
    script = Path(__file__).parent / "scripts" / "ray_search.py"
    tsv, model = shared_data("glue/SST-2") / "train.tsv", shared_model("paraphrase-MiniLM-L3-v2")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(tsv), str(model)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    trials = {t["alpha"]: t for t in json.loads((tmp_path / "trials.json").read_text())}
    assert sorted(trials) == [0.5, 3.0]
    for alpha, trial in trials.items():
        assert (trial["record"]["alpha"], trial["record"]["sources"]) == (alpha, {"alpha": "search"})
        alone = _standalone(tmp_path / f"alone{alpha}", sst2, loss_type="tce", tce_alpha=alpha)
        assert trial["result"]["eval_loss"] == pytest.approx(alone["eval_loss"], rel=1e-5)
        assert trial["result"]["objective"] == pytest.approx(alone["eval_nll"], rel=1e-5)


def test_the_trainer_records_values_set_on_args_after_construction(tmp_path, sst2):
    """trainer.args is the one source of truth: a change after construction trains and records."""
    trainer = SquareLossTrainer(
        model=_model_init(), args=_args(tmp_path, loss_type="tce"), train_dataset=sst2
    )
    trainer.args.tce_alpha = 0.25
    trainer.train()
    assert trainer.model.config.hf_squareloss["alpha"] == 0.25
    assert torch.isfinite(torch.tensor(trainer.state.log_history[-1]["train_loss"]))
    assert hsl.loss_config_of(trainer.model).params["alpha"] == 0.25


def test_a_trial_with_a_loss_that_has_no_hidden_state_form_fails_before_training(tmp_path):
    import one_step

    args = _args(tmp_path, loss_type="square", loss_from_hidden_states=True)
    trainer = SquareLossTrainer(model_init=lambda: one_step.tiny_lm("gpt2"), args=args)
    with pytest.raises(ValueError, match="'softmax_mse' has no form computed from the hidden states"):
        trainer.hyperparameter_search(
            hp_space=lambda t: {"loss_type": "softmax_mse"}, backend="optuna", n_trials=1
        )


SEARCH_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "glue" / "search_loss.py"
SEARCHED = {"square": {"square_k": "k", "square_m": "M"}, "tce": {"tce_alpha": "alpha"}}


def _mrpc_dev(folder: Path, rows: int) -> tuple[list[tuple[str, str]], list[int]]:
    """The first ``rows`` pairs of MRPC's dev.tsv and their labels, read here with csv."""
    import csv

    with open(folder / "dev.tsv", encoding="utf-8-sig", newline="") as fh:
        lines = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[:rows]
    return [(r["#1 String"], r["#2 String"]) for r in lines], [int(r["Quality"]) for r in lines]


def _objective_of(checkpoint: Path, pairs: list[tuple[str, str]], labels: list[int]) -> float:
    """Accuracy + F1 of the checkpoint's model on the pairs: MRPC's GLUE objective, computed here."""
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    batch = tokenizer(
        [a for a, _ in pairs], [b for _, b in pairs], truncation=True, max_length=64, padding=True
    )
    with torch.no_grad():
        predicted = model(**{k: torch.tensor(v) for k, v in batch.items()}).logits.argmax(-1).tolist()
    return accuracy_score(labels, predicted) + f1_score(labels, predicted)


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend, loss", [("optuna", "square"), pytest.param("ray", "tce", marks=pytest.mark.ray)]
)
def test_the_glue_search_recipe(backend, loss, tmp_path, shared_data, shared_model):
    """``recipes/glue/search_loss.py`` with 2 trials on 32 MRPC pairs: each trial trains with its own values (its
    checkpoint records them), in the registry's ranges, and its objective is accuracy + F1 of its model."""
    from hf_squareloss.search import registered_ranges

    if backend == "ray":
        pytest.importorskip("ray")
    out, mrpc = tmp_path / "search", shared_data("glue/MRPC")
    run = subprocess.run(
        [
            sys.executable, str(SEARCH_RECIPE), "--task_name", "mrpc", "--data_dir", str(mrpc),
            "--model_name_or_path", str(shared_model("paraphrase-MiniLM-L3-v2")), "--loss", loss,
            "--backend", backend, "--n_trials", "2", "--num_cpus", "2", "--max_train_samples", "32",
            "--max_eval_samples", "16", "--num_train_epochs", "1", "--max_seq_length", "64",
            "--per_device_train_batch_size", "16", "--learning_rate", "1e-4", "--output_dir", str(out),
        ],
        capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads((out / "search_result.json").read_text())
    trials, best = result["trials"], result["best"]
    assert len(trials) == 2 and f"best trial {best['trial']}: objective {best['objective']:.4f}" in run.stdout
    assert best["objective"] == max(t["objective"] for t in trials)
    ranges = registered_ranges()
    for trial in trials:
        values = trial["hyperparameters"]
        assert set(values) == set(SEARCHED[loss])
        assert all(ranges[f][0] <= v <= ranges[f][1] for f, v in values.items())
    assert trials[0]["hyperparameters"] != trials[1]["hyperparameters"]
    pairs, labels = _mrpc_dev(mrpc, 16)
    for trial in trials:
        (checkpoint,) = out.glob(f"run-{trial['trial']}/checkpoint-*")
        record = json.loads((checkpoint / "config.json").read_text())["hf_squareloss"]
        assert record["loss_type"] == loss and set(record["sources"].values()) == {"search"}
        for field, key in SEARCHED[loss].items():
            assert record[key] == pytest.approx(trial["hyperparameters"][field])
        assert trial["objective"] == pytest.approx(_objective_of(checkpoint, pairs, labels), abs=1e-6)
