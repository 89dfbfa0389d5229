"""SquareLossTrainer: exact normalisation, model heads, the loss record, resuming, arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    BertConfig,
    BertForMultipleChoice,
    BertForSequenceClassification,
    BertForTokenClassification,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    ViTConfig,
    ViTForImageClassification,
    Wav2Vec2Config,
    Wav2Vec2ForSequenceClassification,
)

import hf_squareloss as hsl
from hf_squareloss import SquareLossTrainer, SquareLossTrainingArguments, loss_types

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
import one_step

SCRIPT = Path(__file__).parent / "scripts" / "one_step.py"


def _args(tmp_path, **kw) -> dict:
    base = dict(
        output_dir=str(tmp_path),
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
    )
    base.update(kw)
    return base


def _params(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# ---------------------------------------------------------------------------------------------------------------
# exact normalisation: accumulation and data parallel
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def single_process_steps(tmp_path_factory):
    """Parameters after one step, batch 16 and batch 8 x 2 accumulation, for every loss type and stock Trainer."""
    base, data = one_step.tiny_bert(), one_step.dataset()
    out = {}
    tmp = str(tmp_path_factory.mktemp("steps"))
    for loss_type in [*loss_types(), None]:
        for batch, accumulation in ((16, 1), (8, 2)):
            out[(loss_type, batch, accumulation)] = one_step.one_step(
                base, data, batch, accumulation, loss_type, tmp
            )
    out["initial"] = _params(base)
    return out


@pytest.mark.parametrize("loss_type", loss_types())
def test_gradient_accumulation_is_exact(single_process_steps, loss_type):
    full = single_process_steps[(loss_type, 16, 1)]
    accumulated = single_process_steps[(loss_type, 8, 2)]
    assert (full - single_process_steps["initial"]).abs().max() > 1e-3  # the step did something
    torch.testing.assert_close(accumulated, full, rtol=0, atol=1e-6)


def test_stock_trainer_scales_bert_ce_by_accumulation_steps(single_process_steps):
    """The upstream trap our docs describe: stock Trainer + BERT CE takes a 2x step with 2 accumulation steps."""
    initial = single_process_steps["initial"]
    full = single_process_steps[(None, 16, 1)] - initial
    accumulated = single_process_steps[(None, 8, 2)] - initial
    ours = single_process_steps[("ce", 16, 1)] - initial
    torch.testing.assert_close(full, ours, rtol=0, atol=1e-6)  # no accumulation: the same CE step
    ratio = (accumulated.norm() / full.norm()).item()
    assert ratio == pytest.approx(2.0, rel=0.05)


@pytest.mark.slow
def test_two_processes_equal_one(single_process_steps, tmp_path):
    """2 CPU processes x batch 8 (torchrun, gloo) take the same step as 1 process x batch 16, for every loss."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
    ]
    for mode in ("ours", "stock"):
        out = tmp_path / mode
        out.mkdir()
        cmd = [*torchrun, str(SCRIPT), str(out), "8", "1", *(["stock"] if mode == "stock" else [])]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = torch.load(out / "params.pt")
        if mode == "ours":
            assert set(results) == set(loss_types())
            for loss_type, params in results.items():
                torch.testing.assert_close(
                    params, single_process_steps[(loss_type, 16, 1)], rtol=0, atol=1e-6
                )
        else:
            initial = single_process_steps["initial"]
            ddp_step = results["stock"] - initial
            full = single_process_steps[(None, 16, 1)] - initial
            # stock Trainer + BERT: the loss is multiplied by the world size, DDP averages: a 2x step
            assert (ddp_step.norm() / full.norm()).item() == pytest.approx(2.0, rel=0.05)


# ---------------------------------------------------------------------------------------------------------------
# heads: the loss the trainer computes equals the formula on the model's own logits
# ---------------------------------------------------------------------------------------------------------------
def _bert_config(**kw):
    return BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=32,
        **kw,
    )


def _heads():
    g = torch.Generator().manual_seed(0)
    token_labels = torch.randint(0, 5, (4, 7), generator=g)
    token_labels[:, 0] = -100
    token_labels[1, 4:] = -100
    return {
        "sequence": (
            BertForSequenceClassification(_bert_config(num_labels=3)),
            {"input_ids": torch.randint(1, 40, (4, 7), generator=g)},
            torch.randint(0, 3, (4,), generator=g),
            3,
        ),
        "token": (
            BertForTokenClassification(_bert_config(num_labels=5)),
            {"input_ids": torch.randint(1, 40, (4, 7), generator=g)},
            token_labels,
            5,
        ),
        "multiple_choice": (
            BertForMultipleChoice(_bert_config()),
            {"input_ids": torch.randint(1, 40, (4, 4, 6), generator=g)},
            torch.randint(0, 4, (4,), generator=g),
            4,
        ),
        "image": (
            ViTForImageClassification(
                ViTConfig(
                    image_size=8,
                    patch_size=4,
                    num_channels=1,
                    hidden_size=16,
                    num_hidden_layers=1,
                    num_attention_heads=2,
                    intermediate_size=32,
                    num_labels=6,
                )
            ),
            {"pixel_values": torch.randn(4, 1, 8, 8, generator=g)},
            torch.randint(0, 6, (4,), generator=g),
            6,
        ),
        "audio": (
            Wav2Vec2ForSequenceClassification(
                Wav2Vec2Config(
                    hidden_size=16,
                    num_hidden_layers=1,
                    num_attention_heads=2,
                    intermediate_size=32,
                    conv_dim=(8, 8),
                    conv_stride=(5, 4),
                    conv_kernel=(10, 8),
                    num_conv_pos_embeddings=8,
                    num_conv_pos_embedding_groups=2,
                    classifier_proj_size=8,
                    num_labels=4,
                    do_stable_layer_norm=False,
                    feat_extract_norm="group",
                )
            ),
            {"input_values": torch.randn(4, 800, generator=g)},
            torch.randint(0, 4, (4,), generator=g),
            4,
        ),
    }


@pytest.mark.parametrize("head", ["sequence", "token", "multiple_choice", "image", "audio"])
@pytest.mark.parametrize("loss_type", ["square", "tce"])
def test_heads_use_the_chosen_loss(tmp_path, head, loss_type):
    model, inputs, labels, num_classes = _heads()[head]
    model.eval()
    trainer = SquareLossTrainer(
        model=model, args=SquareLossTrainingArguments(**_args(tmp_path, loss_type=loss_type))
    )
    with torch.no_grad():
        loss = trainer.compute_loss(model, {**inputs, "labels": labels}, num_items_in_batch=None)
        logits = model(**inputs).logits
    assert logits.shape[-1] == num_classes
    keep = labels != -100
    flat_logits, flat_labels = logits[keep].double(), labels[keep]
    if loss_type == "square":  # (k, M) = (1, 1) for a few classes
        onehot = F.one_hot(flat_labels, num_classes).double()
        expected = ((flat_logits - onehot) ** 2).sum(-1).mean() / num_classes
    else:
        t = 1 - torch.log_softmax(flat_logits, -1).gather(-1, flat_labels[:, None]).squeeze(-1)
        expected = ((t ** (1 - 1.5) - 1) / (1 - 1.5)).mean()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    record = model.config.hf_squareloss
    assert record["loss_type"] == loss_type and record["num_classes"] == num_classes


def test_token_classification_normalises_by_num_items(tmp_path):
    model, inputs, labels, _ = _heads()["token"]
    model.eval()
    trainer = SquareLossTrainer(
        model=model, args=SquareLossTrainingArguments(**_args(tmp_path, loss_type="square"))
    )
    n = int((labels != -100).sum())
    with torch.no_grad():
        per_sum = hsl.square_loss(model(**inputs).logits, labels, reduction="sum")
        loss = trainer.compute_loss(
            model, {**inputs, "labels": labels}, num_items_in_batch=torch.tensor(3 * n)
        )
    torch.testing.assert_close(loss, per_sum / (3 * n))


def test_square_preset_follows_number_of_classes(tmp_path):
    model = BertForSequenceClassification(_bert_config(num_labels=1000))
    trainer = SquareLossTrainer(model=model, args=SquareLossTrainingArguments(**_args(tmp_path)))
    assert trainer.loss_function.config.params == {"k": 15.0, "M": 30.0}
    assert model.config.hf_squareloss["M"] == 30.0
    trainer = SquareLossTrainer(
        model=model, args=SquareLossTrainingArguments(**_args(tmp_path, square_m=5.0))
    )
    assert trainer.loss_function.config.params == {"k": 15.0, "M": 5.0}


# ---------------------------------------------------------------------------------------------------------------
# arguments
# ---------------------------------------------------------------------------------------------------------------
def test_constructor_settings_write_through_to_args(tmp_path):
    args = SquareLossTrainingArguments(**_args(tmp_path))
    trainer = SquareLossTrainer(model=one_step.tiny_bert(), args=args, loss_type="tce", tce_alpha=0.5)
    assert trainer.args is args and args.loss_type == "tce" and args.tce_alpha == 0.5
    assert trainer.loss_function.config.params == {"alpha": 0.5}
    with pytest.raises(ValueError, match="alpha must be"):
        SquareLossTrainer(model=one_step.tiny_bert(), args=args, tce_alpha=-1.0)


def test_plain_training_arguments_are_converted(tmp_path):
    plain = TrainingArguments(**_args(tmp_path, learning_rate=3e-4, seed=7))
    trainer = SquareLossTrainer(model=one_step.tiny_bert(), args=plain, loss_type="square", square_k=2.0)
    assert isinstance(trainer.args, SquareLossTrainingArguments)
    assert trainer.args.learning_rate == 3e-4 and trainer.args.seed == 7 and trainer.args.square_k == 2.0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"loss_type": "hinge"}, "unknown loss_type"),
        ({"square_k": 0.0}, "k must be"),
        ({"square_m": -2.0}, "M must be"),
        ({"tce_alpha": -0.5}, "alpha must be"),
        ({"square_preset": "cifar"}, "unknown square-loss preset"),
        ({"loss_type": "square", "label_smoothing_factor": 0.1}, "cannot be honoured"),
        ({"loss_type": "tce", "label_smoothing_factor": 0.1}, "cannot be honoured"),
    ],
)
def test_invalid_arguments_fail_in_post_init(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SquareLossTrainingArguments(**_args(tmp_path, **kwargs))


def test_cli_parser_has_help_for_every_loss_field():
    parser = HfArgumentParser((SquareLossTrainingArguments,))
    help_text = parser.format_help()
    for flag in ("--loss_type", "--square_k", "--square_m", "--square_preset", "--tce_alpha"):
        assert flag in help_text
    for flag in ("--gce_q", "--sce_alpha", "--sce_beta", "--sce_a", "--nce_rce_alpha", "--focal_gamma"):
        assert flag in help_text
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", "x", "--loss_type", "sce", "--sce_alpha", "1", "--sce_a", "-4", "--tce_alpha", "0.5"]
    )
    assert args.loss_config(10).params == {"alpha": 1.0, "beta": 1.0, "A": -4.0}
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", "x", "--loss_type", "tce", "--tce_alpha", "1"]
    )
    assert args.loss_type == "tce" and args.tce_alpha == 1.0
    with pytest.raises(SystemExit):
        parser.parse_args_into_dataclasses(["--output_dir", "x", "--loss_type", "hinge"])


def test_loss_record_says_which_parameters_were_given(tmp_path):
    model = one_step.tiny_bert()
    SquareLossTrainer(model=model, args=SquareLossTrainingArguments(**_args(tmp_path, loss_type="tce")))
    record = model.config.hf_squareloss
    assert (
        record["alpha"] == 1.5 and record["source"] == "default" and record["sources"] == {"alpha": "default"}
    )
    SquareLossTrainer(
        model=model, args=SquareLossTrainingArguments(**_args(tmp_path)), loss_type="sce", sce_beta=2.0
    )
    record = model.config.hf_squareloss
    assert record["beta"] == 2.0 and record["sources"] == {"alpha": "default", "beta": "user", "A": "default"}


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"loss_type": "ce", "gce_q": 0.0}, "--gce_q: q must be"),  # the field of a loss not chosen
        ({"loss_type": "sce", "sce_alpha": 0.0, "sce_beta": 0.0}, "both 0"),
        ({"loss_type": "focal", "focal_gamma": -1.0}, "gamma must be"),
        ({"loss_type": "gce", "label_smoothing_factor": 0.1}, "cannot be honoured"),
    ],
)
def test_invalid_new_loss_arguments_fail_in_post_init(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SquareLossTrainingArguments(**_args(tmp_path, **kwargs))


def test_label_smoothing_is_honoured_by_ce(tmp_path):
    model, inputs, labels, _ = _heads()["sequence"]
    model.eval()
    args = SquareLossTrainingArguments(**_args(tmp_path, loss_type="ce", label_smoothing_factor=0.2))
    trainer = SquareLossTrainer(model=model, args=args)
    with torch.no_grad():
        loss = trainer.compute_loss(model, {**inputs, "labels": labels})
        expected = F.cross_entropy(model(**inputs).logits, labels, label_smoothing=0.2)
    torch.testing.assert_close(loss, expected)


def test_compute_loss_func_is_refused(tmp_path):
    with pytest.raises(ValueError, match="compute_loss_func"):
        SquareLossTrainer(
            model=one_step.tiny_bert(),
            args=SquareLossTrainingArguments(**_args(tmp_path)),
            compute_loss_func=lambda *a, **k: 0,
        )


def _tce_reference_step(base, data) -> torch.Tensor:
    """One full-batch SGD step (lr 0.5) on the mean TCE (alpha 1.5) of the 16 examples, from the formula."""
    model = base.__class__(base.config)
    model.load_state_dict(base.state_dict())
    model.train()
    logits = model(input_ids=torch.tensor(data["input_ids"])).logits.double()
    log_q = torch.log_softmax(logits, -1).gather(-1, torch.tensor(data["labels"])[:, None]).squeeze(-1)
    loss = (((1 - log_q) ** (1 - 1.5) - 1) / (1 - 1.5)).mean()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.5 * p.grad
    return _params(model)


def test_stock_trainer_helper_matches_square_loss_trainer(tmp_path):
    base, data = one_step.tiny_bert(), one_step.dataset()
    reference = _tce_reference_step(base, data)
    ours = one_step.one_step(base, data, 8, 2, "tce", str(tmp_path))
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)
    model = base.__class__(base.config)
    model.load_state_dict(base.state_dict())
    args = TrainingArguments(
        **_args(
            tmp_path,
            per_device_train_batch_size=8,
            gradient_accumulation_steps=2,
            max_steps=1,
            learning_rate=0.5,
            optim="sgd",
            lr_scheduler_type="constant",
            max_grad_norm=1e9,
            weight_decay=0.0,
            seed=0,
        )
    )
    Trainer(
        model=model,
        args=args,
        train_dataset=data,
        compute_loss_func=hsl.make_compute_loss_func("tce", model=model),
    ).train()
    torch.testing.assert_close(_params(model), reference, rtol=0, atol=1e-6)


def test_helper_takes_square_preset_from_the_classes_it_first_sees():
    fn = hsl.make_compute_loss_func("square")
    g = torch.Generator().manual_seed(0)
    logits, labels = 5 * torch.randn(6, 1000, generator=g), torch.randint(0, 1000, (6,), generator=g)
    loss = fn({"logits": logits}, labels)
    assert fn.config.params == {"k": 15.0, "M": 30.0} and fn.num_classes == 1000
    f, onehot = logits.double(), F.one_hot(labels, 1000).double()
    per_item = (15 * ((f * onehot).sum(-1) - 30) ** 2 + (f**2 * (1 - onehot)).sum(-1)) / 1000
    torch.testing.assert_close(loss.double(), per_item.mean(), rtol=1e-6, atol=1e-6)
    # an integer num_items_in_batch (a custom trainer may pass one): sum / num_items
    torch.testing.assert_close(
        fn({"logits": logits}, labels, num_items_in_batch=4).double(),
        per_item.sum() / 4,
        rtol=1e-6,
        atol=1e-6,
    )
    assert fn({"logits": logits[:2, :3]}, labels[:2] % 3) is not None and fn.config.params == {
        "k": 1.0,
        "M": 1.0,
    }


def test_missing_labels_is_a_clear_error():
    fn = hsl.make_compute_loss_func("square")
    with pytest.raises(ValueError, match="needs `labels`"):
        fn({"logits": torch.randn(2, 3)}, None)


# ---------------------------------------------------------------------------------------------------------------
# the loss record: config round trip, checkpoints, resuming
# ---------------------------------------------------------------------------------------------------------------
def test_config_round_trip(tmp_path):
    model = one_step.tiny_bert()
    args = SquareLossTrainingArguments(**_args(tmp_path, loss_type="square", square_preset="timit"))
    trainer = SquareLossTrainer(model=model, args=args)
    trainer.save_model(str(tmp_path / "saved"))
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())["hf_squareloss"]
    assert (
        saved["loss_type"] == "square"
        and saved["k"] == 1.0
        and saved["M"] == 15.0
        and saved["num_classes"] == 3
    )
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path / "saved")
    config = hsl.loss_config_of(reloaded)
    assert config.same_loss(trainer.loss_function.config)
    logits = torch.tensor([[0.0, 15.0, 3.0]])
    torch.testing.assert_close(hsl.logits_to_scores(logits, reloaded), logits / 15.0)
    assert hsl.pipeline_kwargs(reloaded) == {"function_to_apply": "none"}


def _train_with_checkpoints(tmp_path, **loss):
    args = SquareLossTrainingArguments(
        **_args(
            tmp_path,
            per_device_train_batch_size=4,
            max_steps=2,
            save_steps=1,
            save_strategy="steps",
            learning_rate=1e-3,
            **loss,
        )
    )
    trainer = SquareLossTrainer(model=one_step.tiny_bert(), args=args, train_dataset=one_step.dataset())
    trainer.train()
    return args


def test_resume_with_other_loss_settings_is_an_error(tmp_path):
    _train_with_checkpoints(tmp_path, loss_type="square")
    checkpoint = tmp_path / "checkpoint-2"
    assert json.loads((checkpoint / "config.json").read_text())["hf_squareloss"]["loss_type"] == "square"
    more = dict(per_device_train_batch_size=4, max_steps=3, save_strategy="no", learning_rate=1e-3)
    for change, match in (({"loss_type": "tce"}, "trained with square"), ({"square_m": 3.0}, "M=3")):
        args = SquareLossTrainingArguments(**_args(tmp_path, **more, **{"loss_type": "square", **change}))
        trainer = SquareLossTrainer(model=one_step.tiny_bert(), args=args, train_dataset=one_step.dataset())
        with pytest.raises(ValueError, match=match):
            trainer.train(resume_from_checkpoint=True)
    args = SquareLossTrainingArguments(**_args(tmp_path, **more, loss_type="square"))
    trainer = SquareLossTrainer(model=one_step.tiny_bert(), args=args, train_dataset=one_step.dataset())
    trainer.train(resume_from_checkpoint=str(checkpoint))
    assert trainer.state.global_step == 3


def test_logits_to_scores():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    torch.testing.assert_close(hsl.logits_to_scores(logits, "ce"), torch.softmax(logits, -1))
    torch.testing.assert_close(hsl.logits_to_scores(logits, "square"), logits)
    config = hsl.LossConfig.resolve("square", preset="librispeech")
    torch.testing.assert_close(hsl.logits_to_scores(logits, config), logits / 30.0)
    assert hsl.pipeline_kwargs("tce") == {}
    with pytest.raises(ValueError, match="no `hf_squareloss` record"):
        hsl.loss_config_of(one_step.tiny_bert())


def test_pipeline_reads_square_loss_scores(shared_model):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    path = shared_model("paraphrase-MiniLM-L3-v2")
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    model.config.hf_squareloss = hsl.LossConfig.resolve("square", num_classes=2).to_dict()
    tokenizer = AutoTokenizer.from_pretrained(path)
    classify = pipeline(
        "text-classification",
        model=model,
        tokenizer=tokenizer,
        device="cpu",
        top_k=None,
        **hsl.pipeline_kwargs(model),
    )
    (result,) = classify(["a fine sentence"])
    scores = {d["label"]: d["score"] for d in result}
    with torch.no_grad():
        logits = model(**tokenizer("a fine sentence", return_tensors="pt")).logits[0]
    for i, value in enumerate(logits.tolist()):
        assert scores[model.config.id2label[i]] == pytest.approx(value, abs=1e-5)


def test_model_init_gets_the_loss_record_on_the_first_step(tmp_path):
    args = SquareLossTrainingArguments(
        **_args(tmp_path, loss_type="square", per_device_train_batch_size=8, max_steps=1, learning_rate=1e-3)
    )
    trainer = SquareLossTrainer(
        model_init=lambda: one_step.tiny_bert(), args=args, train_dataset=one_step.dataset()
    )
    trainer.train()
    record = trainer.model.config.hf_squareloss
    assert record["loss_type"] == "square" and record["num_classes"] == 3 and record["M"] == 1.0
