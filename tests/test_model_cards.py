"""Model cards rendered from fixtures and parsed strictly: the card core for every registered loss, the GLUE run,
ASR run and sweep cards, the Trainer's card (SquareLossTrainer and the stock Trainer), a user script pushing with
``trainer.push_to_hub()`` to the local Hub stand-in, the folder kinds of ``hf-squareloss card``, and the import
graph of the package (no cycles; the card core imports no application)."""

from __future__ import annotations

import ast
import json
import shutil
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hub_server import serve
from test_hub import TOKEN, _env

from hf_squareloss import LossConfig, get_loss_spec, loss_types
from hf_squareloss.citations import BIBTEX
from hf_squareloss.cli import main as cli_main
from hf_squareloss.compare.card import render_sweep_card
from hf_squareloss.compare.report import write_report
from hf_squareloss.folder_card import folder_kind
from hf_squareloss.glue.card import card_info_from_run
from hf_squareloss.model_card import CardMetric, ModelCardInfo, render_model_card, save_card
from hf_squareloss.speechbrain.card import card_info_from_asr_run

PACKAGE = Path(__file__).resolve().parents[1] / "hf_squareloss"
RESULTS = PACKAGE.parent / "recipes" / "glue" / "results"


def _parse(text: str):
    from huggingface_hub import ModelCard

    return ModelCard(text, ignore_metadata_errors=False)


def _meta(text: str) -> dict:
    return _parse(text).data.to_dict()


def _body(text: str) -> str:
    return text.split("\n---\n", 1)[1]


# ---- the core, for every loss of the registry -------------------------------------------------------------------
@pytest.mark.parametrize("loss_type", loss_types())
def test_core_card_for_every_registered_loss(loss_type: str, tmp_path: Path) -> None:
    record = {**LossConfig.resolve(loss_type, num_classes=3).to_dict(), "num_classes": 3}
    info = ModelCardInfo(
        model_name="m",
        loss=record,
        dataset_id="me/data",
        metrics=[CardMetric("eval_accuracy", "accuracy", "Accuracy", 0.625, "test")],
    )
    text = render_model_card(info)
    meta = _meta(text)
    spec = get_loss_spec(loss_type)
    assert meta["tags"][:2] == ["hf-squareloss", loss_type]
    block = meta["hf_squareloss"]
    assert block["loss_type"] == loss_type and block["num_classes"] == 3
    assert {k: block[k] for k in record if k in block} == {k: v for k, v in record.items()}
    (entry,) = meta["model-index"]
    assert entry["results"][0]["dataset"] == {"name": "me/data", "type": "me/data", "split": "test"}
    assert entry["results"][0]["metrics"] == [{"type": "accuracy", "value": 0.625, "name": "Accuracy"}]
    body = _body(text)
    assert spec.formula in body and spec.title in body
    for key in spec.references:
        assert BIBTEX[key] in body
    assert all(key not in body for key in set(BIBTEX) - set(spec.references))
    # square-loss logits are scores: no softmax in the pipeline; every other loss keeps the default
    assert ('function_to_apply="none"' in body) == (spec.outputs == "scores")
    path = save_card(tmp_path, text)
    assert path == tmp_path / "README.md" and path.read_text(encoding="utf-8") == text


def test_core_card_shows_the_calibration_temperature() -> None:
    record = {
        "loss_type": "square",
        "k": 1.0,
        "M": 5.0,
        "source": "user",
        "num_classes": 4,
        "temperature": 2.5,
    }
    text = render_model_card(ModelCardInfo(model_name="m", loss=record))
    assert _meta(text)["hf_squareloss"]["temperature"] == 2.5
    assert "T = 2.5" in _body(text)
    assert "model-index" not in _meta(text)  # no evaluation, no index
    plain = render_model_card(ModelCardInfo(model_name="m", loss={**record, "temperature": None}))
    assert "temperature" not in _meta(plain)["hf_squareloss"] and "T = " not in plain


def test_core_card_offers_a_pipeline_only_where_one_reads_scores() -> None:
    record = {"loss_type": "square", "k": 1.0, "M": 1.0, "source": "user", "num_classes": 50}
    for task in ("text-generation", "token-classification", None):
        text = render_model_card(ModelCardInfo(model_name="m", loss=record, task_type=task))
        assert "function_to_apply" not in text and "logits_to_scores(logits, model)" in text, task
        assert _meta(text).get("pipeline_tag") == task
    audio = render_model_card(ModelCardInfo(model_name="m", loss=record, task_type="audio-classification"))
    assert 'pipeline("audio-classification", model="<this model>", function_to_apply="none"' in audio


def test_core_refuses_an_invalid_card(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not parse"):
        save_card(tmp_path, "---\nmodel-index: [{}]\n---\n# x\n")
    assert not (tmp_path / "README.md").exists()
    with pytest.raises(ValueError, match="unknown loss_type"):
        render_model_card(ModelCardInfo(model_name="m", loss={"loss_type": "nope"}))


# ---- GLUE run card, from a fixture folder -----------------------------------------------------------------------
def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_glue_run_card_from_a_fixture_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    noise = {
        "noise_type": "pair",
        "rate": 0.2,
        "exact": True,
        "seed": 7,
        "num_examples": 50,
        "num_classes": 3,
        "flipped_idx": list(range(10)),
        "num_flipped": 10,
        "realised_rate": 0.2,
    }
    _write(run / "label_noise.json", noise)
    _write(
        run / "dataset.json",
        {"origin": "tsv", "eval_splits": ["validation_matched", "validation_mismatched"]},
    )
    _write(
        run / "run_args.json",
        {
            "model": {"model_name_or_path": str(tmp_path), "base_model_id": "org/base"},
            "data": {"max_seq_length": 64},
            "training": {"learning_rate": 3e-5, "seed": 4, "hub_model_id": None},
        },
    )
    _write(
        run / "run_summary.json",
        {
            "task": "mnli",
            "model_name_or_path": str(tmp_path),
            "loss": {"loss_type": "tce", "alpha": 1.5, "source": "user", "num_classes": 3},
            "seed": 4,
            "protocol": {"name": "early_stopping", "patience": 2},
            "eval_metrics": {
                "eval_accuracy": 0.61,
                "eval_accuracy_mm": 0.59,
                "eval_loss": 0.9,
                "eval_runtime": 3.0,
                "eval_samples": 40,
                "epoch": 2.0,
            },
            "history": [{"epoch": 1.0, "step": 5, "eval_accuracy": 0.5, "train_loss": 1.1}],
            "versions": {"transformers": "5.24.0"},
        },
    )
    assert folder_kind(run) == "glue_run"
    text = render_model_card(card_info_from_run(run))
    meta = _meta(text)
    assert meta["base_model"] == "org/base"
    assert {"hf-squareloss", "tce", "label-noise", "glue", "mnli"} <= set(meta["tags"])
    values = {
        (r["dataset"]["split"], m["type"]): m["value"]
        for r in meta["model-index"][0]["results"]
        for m in r["metrics"]
    }
    assert values == {
        ("validation_matched", "accuracy"): 0.61,
        ("validation_mismatched", "accuracy"): 0.59,
        ("validation_matched", "loss"): 0.9,
    }
    block = meta["hf_squareloss"]
    assert block["alpha"] == 1.5 and block["num_classes"] == 3
    assert block["label_noise"] == {
        "type": "pair",
        "rate": 0.2,
        "exact": True,
        "seed": 7,
        "realised_rate": 0.2,
        "num_flipped": 10,
    }
    body = _body(text)
    assert "| learning_rate | 3e-05 |" in body and "| max_seq_length | 64 |" in body
    assert "0 = `entailment`" in body and "10 of 50 labels changed" in body
    assert "original TSV files" in body
    assert "@inproceedings{martinez2018taming" in body
    # the command writes the same card
    assert cli_main(["card", str(run)]) == 0
    assert (run / "README.md").read_text(encoding="utf-8") == text


# ---- ASR run card, from a fixture results.json ------------------------------------------------------------------
def _asr_results(kind: bool = True) -> dict:
    results = {
        "loss": {"loss_type": "square", "k": 1.0, "M": 15.0, "source": "preset wsj", "num_classes": 31},
        "ctc_weight": 0.3,
        "ctc_alpha": 0.0,
        "seed": 1,
        "corpus": "an4",
        "valid_wer": 21.5,
        "valid_cer": 9.25,
        "valid_greedy_wer": 25.0,
        "score_scale": 3.0,
    }
    return {"kind": "asr_run", **results} if kind else results


def test_asr_card_from_a_fixture_results_file(tmp_path: Path) -> None:
    _write(tmp_path / "results.json", _asr_results())
    assert folder_kind(tmp_path) == "asr_run"
    text = render_model_card(card_info_from_asr_run(tmp_path))
    meta = _meta(text)
    assert meta["library_name"] == "speechbrain" and meta["pipeline_tag"] == "automatic-speech-recognition"
    assert meta["hf_squareloss"]["M"] == 15.0
    found = {(m["type"], m["value"]) for r in meta["model-index"][0]["results"] for m in r["metrics"]}
    assert found == {("wer", 21.5), ("cer", 9.25), ("wer", 25.0)}
    assert "sharpness s = 3" in text and "function_to_apply" not in text


def test_folder_kinds_are_read_from_the_folder(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy_asr"
    _write(legacy / "results.json", _asr_results(kind=False))
    assert folder_kind(legacy) == "asr_run"  # written before results.json carried its kind
    odd = tmp_path / "odd"
    _write(odd / "results.json", {**_asr_results(), "kind": "something else"})
    with pytest.raises(ValueError, match="neither a finished run folder"):
        folder_kind(odd)  # the kind is believed, not the entries
    report = tmp_path / "report"
    _write(report / "results.json", {"kind": "sweep", "sweep": {}, "summary": [], "runs": []})
    assert folder_kind(report) == "sweep"
    with pytest.raises(ValueError, match="is not a folder"):
        folder_kind(tmp_path / "missing")
    assert cli_main(["card", str(tmp_path)]) == 2


# ---- the sweep card: numbers from the aggregate, tables from the report ------------------------------------------
MNLI = {  # loss -> seed -> (matched, mismatched) accuracy
    "ce": {0: (0.70, 0.71), 1: (0.72, 0.69)},
    "square": {0: (0.74, 0.70), 1: (0.71, 0.73)},
}


def _mnli_sweep(root: Path) -> Path:
    for loss, seeds in MNLI.items():
        record = LossConfig.resolve(loss, num_classes=3).to_dict()
        for seed, (matched, mismatched) in seeds.items():
            _write(
                root / "mnli" / "early_stopping" / loss / "noise0" / f"seed{seed}" / "run_summary.json",
                {
                    "task": "mnli",
                    "protocol": {"name": "early_stopping"},
                    "loss": {**record, "num_classes": 3},
                    "loss_description": LossConfig.from_dict(record).describe(),
                    "label_noise": None,
                    "seed": seed,
                    "eval_metrics": {
                        "eval_accuracy": matched,
                        "eval_accuracy_mm": mismatched,
                        "eval_ece": 0.02 + seed / 100,
                        "eval_ece_uncalibrated": 0.1,
                        "eval_nll": 0.6,
                        "eval_nll_uncalibrated": 0.7,
                        "eval_brier": 0.3,
                        "eval_brier_uncalibrated": 0.35,
                    },
                    "calibration": {"temperature": 1.5 + seed},
                    "model_epoch": 2.0,
                    "epochs_trained": 3.0,
                    "num_train_examples": 100,
                    "num_eval_examples": {"validation_matched": 20, "validation_mismatched": 20},
                    "history": [],
                },
            )
    return root


def _headings(text: str) -> list[str]:
    return [line.split("(%)")[0] for line in text.splitlines() if line.startswith("**") and "(%)" in line]


def test_sweep_card_metrics_and_numbers_are_the_reports(tmp_path: Path) -> None:
    root = _mnli_sweep(tmp_path / "sweep")
    write_report(root)
    report = (root / "RESULTS.md").read_text(encoding="utf-8")
    text = render_sweep_card(root, base_model="org/base")
    assert _headings(text) == _headings(report)
    assert any("accuracy mm" in h for h in _headings(text))  # MNLI mismatched reaches the card
    assert "## Calibration" in report and "## Calibration" in text  # the report's calibration table too
    # every table row of the report is in the card, and the means are those of the seeds
    rows = [line for line in report.splitlines() if line.startswith("|")]
    assert rows and all(line in text.splitlines() for line in rows)
    for loss, seeds in MNLI.items():
        for i in (0, 1):
            mean = statistics.fmean(v[i] for v in seeds.values())
            std = statistics.stdev(v[i] for v in seeds.values())
            assert f"{100 * mean:.2f} ± {100 * std:.2f}" in text, (loss, i)
    meta = _meta(text)
    assert meta["base_model"] == "org/base"
    assert [b["loss_type"] for b in meta["hf_squareloss"]["losses"]] == ["ce", "square"]
    assert "@inproceedings{hui2021evaluation" in text

    # the report folder alone (results.json and runs/) gives the same card
    alone = tmp_path / "report_only"
    shutil.copytree(root, alone, ignore=shutil.ignore_patterns("run_summary.json"))
    assert not list(alone.rglob("run_summary.json"))
    assert folder_kind(alone) == "sweep"
    assert render_sweep_card(alone, base_model="org/base") == text


def test_example_card_is_the_card_of_the_evidence() -> None:
    example = (RESULTS / "example_model_card.md").read_text(encoding="utf-8")
    again = render_sweep_card(RESULTS, base_model="sentence-transformers/paraphrase-MiniLM-L3-v2")
    assert _meta(example) == _meta(again), "regenerate it: see recipes/glue/README.md"
    report = (RESULTS / "RESULTS.md").read_text(encoding="utf-8")
    for line in (line for line in report.splitlines() if line.startswith("|")):
        assert line in example.splitlines(), line
    user = (RESULTS / "example_trainer_card.md").read_text(encoding="utf-8")
    assert _meta(user)["hf_squareloss"]["loss_type"] == "square"


# ---- the Trainer's card -----------------------------------------------------------------------------------------
SCRIPT = textwrap.dedent(
    """
    import csv, json, sys
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
    from hf_squareloss import SquareLossTrainer, SquareLossTrainingArguments, attach_model_card, make_compute_loss_func

    tokenizer_path, data_dir, out = sys.argv[1:4]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    with open(f"{data_dir}/train.tsv", encoding="utf-8", newline="") as fh:
        rows = [r for _, r in zip(range(48), csv.DictReader(fh, delimiter="\\t", quoting=csv.QUOTE_NONE))]
    data = Dataset.from_list([{"sentence": r["sentence"], "label": int(r["label"])} for r in rows])
    data = data.map(lambda b: tokenizer(b["sentence"], truncation=True, max_length=24, padding="max_length"),
                    batched=True)
    train, dev = data.select(range(32)), data.select(range(32, 48))

    def model():
        torch.manual_seed(0)
        config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                            num_attention_heads=2, intermediate_size=32, num_labels=2,
                            id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
        return BertForSequenceClassification(config)

    def accuracy(p):
        return {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())}

    common = dict(num_train_epochs=1, per_device_train_batch_size=8, eval_strategy="epoch", save_strategy="no",
                  report_to=[], use_cpu=True, learning_rate=1e-3)
    args = SquareLossTrainingArguments(output_dir=f"{out}/ours", loss_type="square", square_m=2.0,
                                       hub_model_id="tester/sst2-square", **common)
    ours = SquareLossTrainer(model=model(), args=args, train_dataset=train, eval_dataset=dev,
                             compute_metrics=accuracy)
    ours.train()
    ours.push_to_hub(dataset_name="nyu-mll/glue", dataset_config="sst2")

    stock_model = model()
    stock = Trainer(model=stock_model, args=TrainingArguments(output_dir=f"{out}/stock",
                    hub_model_id="tester/sst2-stock", **common), train_dataset=train, eval_dataset=dev,
                    compute_metrics=accuracy,
                    compute_loss_func=make_compute_loss_func("square", model=stock_model, M=2.0))
    attach_model_card(stock)
    stock.train()
    stock.push_to_hub(dataset_name="nyu-mll/glue", dataset_config="sst2")
    json.dump({name: t.state.log_history for name, t in (("ours", ours), ("stock", stock))},
              open(f"{out}/logs.json", "w"))
    """
)


@pytest.mark.slow
def test_user_script_pushes_the_trainer_card(tmp_path: Path, shared_model, shared_data) -> None:
    server, _ = serve(TOKEN)
    try:
        script = tmp_path / "train.py"
        script.write_text(SCRIPT, encoding="utf-8")
        tokenizer = shared_model("paraphrase-MiniLM-L3-v2")
        env = _env(tmp_path, server.url, TOKEN)
        env["OMP_NUM_THREADS"] = "1"
        proc = subprocess.run(
            [sys.executable, str(script), str(tokenizer), str(shared_data("glue/SST-2")), str(tmp_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        logs = json.loads((tmp_path / "logs.json").read_text())
        cards = {}
        for name in ("ours", "stock"):
            files = server.repos[f"tester/sst2-{'square' if name == 'ours' else 'stock'}"]
            assert files["README.md"] == (tmp_path / name / "README.md").read_bytes()
            assert "model.safetensors" in files
            text = files["README.md"].decode()
            meta = _meta(text)
            assert {"hf-squareloss", "square", "text-classification"} <= set(meta["tags"])
            block = meta["hf_squareloss"]
            assert (block["loss_type"], block["k"], block["M"], block["num_classes"]) == (
                "square",
                1.0,
                2.0,
                2,
            )
            last = next(e for e in reversed(logs[name]) if "eval_accuracy" in e)
            (result,) = meta["model-index"][0]["results"]
            assert result["dataset"] == {"name": "nyu-mll/glue", "type": "nyu-mll/glue", "config": "sst2",
                                         "split": "validation"}  # fmt: skip
            found = {m["type"]: m["value"] for m in result["metrics"]}
            expected = {"accuracy": last["eval_accuracy"], "loss": last["eval_loss"]}
            if name == "ours":  # SquareLossTrainer also reports the NLL of the served probabilities
                expected["nll"] = last["eval_nll"]
            assert found == expected
            body = _body(text)
            assert get_loss_spec("square").formula in body and 'function_to_apply="none"' in body
            assert 'model="tester/sst2-' in body and "0 = `negative`" in body
            assert BIBTEX["hui2021evaluation"] in body
            cards[name] = meta
        # the stock Trainer with attach_model_card gets the same card, up to its name
        for meta in cards.values():
            meta.pop("model-index")
            meta.pop("model_name", None)
        assert cards["ours"] == cards["stock"]
        config = json.loads(server.repos["tester/sst2-square"]["config.json"])
        assert config["hf_squareloss"]["M"] == 2.0
    finally:
        server.shutdown()


def test_trainer_card_without_a_dataset_has_no_model_index(tmp_path: Path) -> None:
    import torch
    from datasets import Dataset
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    from hf_squareloss import SquareLossTrainer, SquareLossTrainingArguments, attach_model_card

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        num_labels=3,
    )
    ids = torch.randint(0, 30, (12, 6), generator=torch.Generator().manual_seed(0))
    data = Dataset.from_dict({"input_ids": ids.tolist(), "labels": (ids[:, 0] % 3).tolist()})
    args = SquareLossTrainingArguments(
        output_dir=str(tmp_path / "out"), loss_type="tce", tce_alpha=0.5, report_to=[], use_cpu=True
    )
    trainer = SquareLossTrainer(model=BertForSequenceClassification(config), args=args, eval_dataset=data)
    trainer.evaluate()
    trainer.model.config.hf_squareloss["temperature"] = 1.25  # as a calibration writes it
    path = trainer.create_model_card(
        tags="mine", label_noise={"noise_type": "symmetric", "rate": 0.1, "seed": 0}
    )
    text = path.read_text(encoding="utf-8")
    meta = _meta(text)
    assert "model-index" not in meta and "not in the card's `model-index`" in text
    assert {"hf-squareloss", "tce", "mine", "label-noise"} <= set(meta["tags"])
    assert meta["hf_squareloss"]["alpha"] == 0.5 and meta["hf_squareloss"]["temperature"] == 1.25
    assert meta["hf_squareloss"]["label_noise"]["rate"] == 0.1
    assert BIBTEX["martinez2018taming"] in text and "function_to_apply" not in text

    # a stock Trainer without our loss is refused, even for a model that carries a record of an earlier training
    plain = Trainer(
        model=trainer.model, args=TrainingArguments(str(tmp_path / "s"), report_to=[], use_cpu=True)
    )
    with pytest.raises(ValueError, match="does not train with an hf-squareloss loss"):
        attach_model_card(plain)


# ---- the import graph -------------------------------------------------------------------------------------------
def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """module -> package modules it imports anywhere (top level or inside functions)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                # a submodule by its name, anything else from the module (or package) it is defined in
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    graph = _imports()
    assert "hf_squareloss.model_card" in graph["hf_squareloss.glue.card"]  # the walk sees relative imports
    assert _cycles(graph) == []


def test_card_core_imports_no_application() -> None:
    graph = _imports()
    reached, todo = set(), ["hf_squareloss.model_card"]
    while todo:
        for nxt in graph[todo.pop()] - reached:
            reached.add(nxt)
            todo.append(nxt)
    applications = (
        "glue",
        "vision",
        "runs",
        "compare",
        "speechbrain",
        "trainer",
        "training_args",
        "trainer_card",
        "demo",
        "cli",
    )
    assert not [m for m in reached if m.partition(".")[2].split(".")[0] in applications], reached
    # and in a fresh interpreter: no transformers, no recipe
    code = (
        "import sys, hf_squareloss.model_card; "
        "print(' '.join(m for m in sys.modules if m == 'transformers' or m.startswith('hf_squareloss.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "transformers" not in out
    assert not [m for m in out if m.partition(".")[2].split(".")[0] in applications], out


def test_checkpoints_pushed_during_training_carry_the_card(tmp_path: Path, monkeypatch) -> None:
    import torch
    from datasets import Dataset
    from transformers import BertConfig, BertForSequenceClassification, Trainer

    from hf_squareloss import SquareLossTrainer, SquareLossTrainingArguments

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        num_labels=2,
    )
    ids = torch.randint(0, 30, (8, 6), generator=torch.Generator().manual_seed(1))
    data = Dataset.from_dict({"input_ids": ids.tolist(), "labels": (ids[:, 0] % 2).tolist()})
    args = SquareLossTrainingArguments(
        output_dir=str(tmp_path / "out"), loss_type="square", save_strategy="no", report_to=[], use_cpu=True
    )
    trainer = SquareLossTrainer(model=BertForSequenceClassification(config), args=args, train_dataset=data)
    trainer.train()
    pushed = []
    monkeypatch.setattr(Trainer, "_push_from_checkpoint", lambda self, folder: pushed.append(folder))
    trainer.args.push_to_hub = True  # as with --push_to_hub and a hub_strategy: each save pushes output_dir
    trainer._save_checkpoint(trainer.model, None)
    assert pushed  # the stock checkpoint push ran, and found our card in output_dir
    meta = _meta((tmp_path / "out" / "README.md").read_text(encoding="utf-8"))
    assert meta["hf_squareloss"]["loss_type"] == "square" and "hf-squareloss" in meta["tags"]
