"""PEFT adapters (LoRA) keep the loss: the record (and temperature) travels in the adapter, the loaded adapter reads
as it was trained, the card is this package's, and adapter heads train on the model's own targets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

peft = pytest.importorskip("peft")
from peft import (  # noqa: E402
    AutoPeftModelForCausalLM,
    AutoPeftModelForSequenceClassification,
    LoraConfig,
    get_peft_model,
)
from transformers import AutoModelForSequenceClassification  # noqa: E402

import hf_squareloss as hsl  # noqa: E402
from hf_squareloss import SquareLossTrainer, SquareLossTrainingArguments  # noqa: E402
from hf_squareloss.loss_function import read_loss_record  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
import one_step  # noqa: E402


def _args(out, **kw) -> SquareLossTrainingArguments:
    base = dict(
        output_dir=str(out),
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        learning_rate=1e-2,
        max_steps=3,
        per_device_train_batch_size=8,
    )
    return SquareLossTrainingArguments(**{**base, **kw})


@pytest.fixture(scope="module")
def sst2_batch(shared_model, shared_data):
    """64 real SST-2 sentences tokenised by MiniLM's tokenizer (ids folded into the tiny BERT's vocabulary)."""
    import csv

    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(shared_model("paraphrase-MiniLM-L3-v2"))
    path = shared_data("glue/SST-2") / "train.tsv"
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[:64]
    encoded = tokenizer([r["sentence"] for r in rows], truncation=True, max_length=16, padding="max_length")
    ids = [[i % 60 for i in row] for row in encoded["input_ids"]]  # the tiny BERT has 60 tokens
    return Dataset.from_dict(
        {
            "input_ids": ids,
            "attention_mask": encoded["attention_mask"],
            "labels": [int(r["label"]) for r in rows],
        }
    )


@pytest.fixture()
def base_folder(tmp_path):
    """A complete base checkpoint (every weight saved: a reloaded base equals the one trained on)."""
    folder = tmp_path / "base"
    one_step.tiny_bert(num_labels=2).save_pretrained(folder)
    return folder


def _lora(base_folder, task_type="SEQ_CLS"):
    base = AutoModelForSequenceClassification.from_pretrained(base_folder)
    return get_peft_model(base, LoraConfig(task_type=task_type, r=4, target_modules=["query", "value"]))


def test_a_lora_adapter_keeps_its_loss_record_temperature_and_card(tmp_path, base_folder, sst2_batch):
    model = _lora(base_folder)
    out = tmp_path / "adapter"
    trainer = SquareLossTrainer(
        model=model,
        args=_args(out, loss_type="tce", tce_alpha=0.5),
        train_dataset=sst2_batch,
        eval_dataset=sst2_batch,
    )
    trainer.train()
    trainer.evaluate()
    hsl.set_temperature(model, 1.7)
    trainer.save_model()

    assert not (
        out / "config.json"
    ).exists()  # an adapter folder, which transformers must not read as a full model
    saved = json.loads((out / "adapter_config.json").read_text())["auto_mapping"]["hf_squareloss"]
    assert (saved["loss_type"], saved["alpha"], saved["temperature"], saved["num_classes"]) == (
        "tce",
        0.5,
        1.7,
        2,
    )
    assert read_loss_record(out) == saved

    card = (out / "README.md").read_text()
    meta = card.split("---")[1]
    assert "library_name: peft" in meta and "- hf-squareloss" in meta and "- lora" in meta and "- tce" in meta
    assert "temperature: 1.7" in meta
    assert str(base_folder) in card and "AutoPeftModelForSequenceClassification" in card
    assert "Tamed Cross Entropy" in card

    model.eval()
    loaded = AutoPeftModelForSequenceClassification.from_pretrained(out).eval()
    batch = {k: torch.tensor(sst2_batch[:6][k]) for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        trained_logits, loaded_logits = model(**batch).logits, loaded(**batch).logits
    torch.testing.assert_close(loaded_logits, trained_logits)
    config = hsl.loss_config_of(loaded)
    assert (config.loss_type, config.params["alpha"]) == ("tce", 0.5)
    assert hsl.temperature_of(loaded) == 1.7
    expected = torch.softmax(trained_logits.double() / 1.7, -1)  # independent: TCE serves softmax(z / T)
    torch.testing.assert_close(hsl.logits_to_scores(loaded_logits.double(), loaded), expected)

    # transformers' own adapter loading finds the record too (model.peft_config)
    native = AutoModelForSequenceClassification.from_pretrained(out)
    assert hsl.loss_config_of(native).params["alpha"] == 0.5


def test_an_adapters_record_wins_over_its_base_models(tmp_path, base_folder, sst2_batch):
    """A base model fine-tuned with the square loss earlier carries its own record; the adapter's is the one read."""
    base = AutoModelForSequenceClassification.from_pretrained(base_folder)
    hsl.make_compute_loss_func("square", model=base)  # the base's record: square
    base.save_pretrained(base_folder)
    model = _lora(base_folder)
    out = tmp_path / "adapter"
    SquareLossTrainer(model=model, args=_args(out, loss_type="ce"), train_dataset=sst2_batch).train()
    model.save_pretrained(out)  # PEFT's own save: the record is in the in-memory adapter config
    loaded = AutoPeftModelForSequenceClassification.from_pretrained(out)
    assert loaded.config.hf_squareloss["loss_type"] == "square"  # the base model's
    assert hsl.loss_config_of(loaded).loss_type == "ce"


def test_resuming_an_adapter_checkpoint_checks_its_loss(tmp_path, base_folder, sst2_batch):
    out = tmp_path / "run"
    args = _args(out, loss_type="tce", tce_alpha=0.5, save_strategy="steps", save_steps=2, max_steps=2)
    SquareLossTrainer(model=_lora(base_folder), args=args, train_dataset=sst2_batch).train()
    checkpoint = out / "checkpoint-2"
    assert read_loss_record(checkpoint)["alpha"] == 0.5
    other = _args(out, loss_type="tce", tce_alpha=1.0, max_steps=4)
    with pytest.raises(ValueError, match=r"cannot resume .*tce \(alpha=0.5\)"):
        SquareLossTrainer(model=_lora(base_folder), args=other, train_dataset=sst2_batch).train(
            resume_from_checkpoint=str(checkpoint)
        )


def test_an_adapter_without_task_type_keeps_the_record(tmp_path, base_folder, sst2_batch):
    """PEFT writes its own auto_mapping for adapters without a task type; the record is added beside its keys."""
    base = AutoModelForSequenceClassification.from_pretrained(base_folder)
    model = get_peft_model(
        base, LoraConfig(r=4, target_modules=["query", "value"], modules_to_save=["classifier"])
    )
    out = tmp_path / "adapter"
    trainer = SquareLossTrainer(model=model, args=_args(out, loss_type="square"), train_dataset=sst2_batch)
    trainer.train()
    trainer.save_model()
    mapping = json.loads((out / "adapter_config.json").read_text())["auto_mapping"]
    assert mapping["base_model_class"] == "BertForSequenceClassification"  # PEFT's own keys kept
    assert mapping["hf_squareloss"]["loss_type"] == "square"


def test_a_lora_causal_lm_trains_on_shifted_targets(tmp_path):
    """A PEFT causal LM is a causal-LM head: ce equals the base model's own (shifted) loss, and the adapter loads
    back with its record."""
    base_folder = tmp_path / "gpt2"
    one_step.tiny_lm("gpt2").save_pretrained(base_folder)
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_folder),
        LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["c_attn"]),
    ).eval()
    trainer = SquareLossTrainer(model=model, args=_args(tmp_path / "lm", loss_type="ce"))
    assert trainer.loss_function.head.kind == "causal_lm"
    ids = torch.randint(2, one_step.LM_VOCAB, (3, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        own = model(input_ids=ids, labels=ids).loss
        ours = trainer.compute_loss(model, {"input_ids": ids, "labels": ids})
    torch.testing.assert_close(ours, own)
    trainer.save_model()
    loaded = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "lm")
    assert hsl.loss_config_of(loaded).loss_type == "ce"
    assert (
        json.loads((tmp_path / "lm" / "adapter_config.json").read_text())["auto_mapping"]["hf_squareloss"][
            "head"
        ]
        == "causal_lm"
    )
