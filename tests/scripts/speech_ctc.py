"""CTC fine-tuning in the shape of transformers' ``run_speech_recognition_ctc.py``, with ``SquareLossTrainer``.

The same steps in the same order: parse (model, data, training) arguments with ``HfArgumentParser``; read the
corpus; build a character vocabulary and a ``Wav2Vec2CTCTokenizer``; make the model; preprocess the audio and
tokenise the targets; build the data collator and the Trainer; train; evaluate; write the card. The corpus is CMU
AN4 (``--an4_root``: ``etc/an4_train.transcription`` and ``wav/<fileid>.sph``); the model is a small
``Wav2Vec2ForCTC`` made from a config (no pretrained checkpoint offline). ``--stock`` builds the stock ``Trainer``
instead (the model's own CTC loss). Prints ``PREPROCESSED`` when the data is ready, ``TRAINER BUILT`` after the
Trainer, and a last line ``METRICS <json>`` with the evaluation.

    python speech_ctc.py --an4_root ../shared/data/an4 --output_dir out --loss_type ce --do_eval
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import (
    HfArgumentParser,
    Trainer,
    Wav2Vec2Config,
    Wav2Vec2CTCTokenizer,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForCTC,
)

from hf_squareloss import SquareLossTrainer, SquareLossTrainingArguments
from hf_squareloss.speechbrain.audio import read_mono

SAMPLE_RATE = 16000


@dataclass
class ModelArguments:
    hidden_size: int = field(default=32, metadata={"help": "Transformer width of the small Wav2Vec2."})
    ctc_loss_reduction: str = field(
        default="mean", metadata={"help": "The model's CTC reduction: mean or sum."}
    )


@dataclass
class DataTrainingArguments:
    an4_root: str = field(metadata={"help": "CMU AN4 folder (etc/ and wav/)."})
    max_train_samples: int = field(default=8, metadata={"help": "Training utterances (the first ones)."})
    max_eval_samples: int = field(default=8, metadata={"help": "Evaluation utterances (the next ones)."})
    stock: bool = field(default=False, metadata={"help": "Use the stock Trainer (the model's own loss)."})


def read_an4(root: Path, count: int) -> list[tuple[str, str]]:
    """``[(sph path, text)]`` of the first ``count`` utterances of AN4's training part."""
    lines = (root / "etc" / "an4_train.transcription").read_text().splitlines()
    ids = (root / "etc" / "an4_train.fileids").read_text().split()
    out = []
    for fileid, line in zip(ids, lines, strict=False):
        text = line.replace("<s>", "").split("</s>")[0].strip()
        out.append((str(root / "wav" / f"{fileid}.sph"), text))
        if len(out) == count:
            break
    return out


def main() -> dict[str, Any]:
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, SquareLossTrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses()

    # 1. the corpus
    rows = read_an4(Path(data_args.an4_root), data_args.max_train_samples + data_args.max_eval_samples)
    splits = {"train": rows[: data_args.max_train_samples], "eval": rows[data_args.max_train_samples :]}

    # 2. the vocabulary and the tokenizer ("|" is the word delimiter, as in the example)
    chars = sorted({c for _, text in rows for c in text.replace(" ", "|")})
    vocab = {"[PAD]": 0, "[UNK]": 1, **{c: i + 2 for i, c in enumerate(chars)}}
    os.makedirs(training_args.output_dir, exist_ok=True)
    vocab_file = Path(training_args.output_dir) / "vocab.json"
    vocab_file.write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(
        str(vocab_file), unk_token="[UNK]", pad_token="[PAD]", word_delimiter_token="|"
    )
    feature_extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )

    # 3. the model
    torch.manual_seed(training_args.seed)
    config = Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=model_args.hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * model_args.hidden_size,
        conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 8, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
        mask_time_prob=0.0,
        pad_token_id=tokenizer.pad_token_id,
        ctc_loss_reduction=model_args.ctc_loss_reduction,
    )
    model = Wav2Vec2ForCTC(config)

    # 4. preprocessing: audio and targets
    def prepare(split: list[tuple[str, str]]) -> Dataset:
        values, labels = [], []
        for path, text in split:
            wave = read_mono(path, SAMPLE_RATE).numpy()
            values.append(feature_extractor(wave, sampling_rate=SAMPLE_RATE).input_values[0].tolist())
            labels.append(tokenizer(text).input_ids)
        return Dataset.from_dict({"input_values": values, "labels": labels})

    datasets = {name: prepare(split) for name, split in splits.items()}
    print("PREPROCESSED", flush=True)

    # 5. the collator and the Trainer
    def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        padded = feature_extractor.pad(
            [{"input_values": b["input_values"]} for b in batch], padding=True, return_tensors="pt"
        )
        width = max(len(b["labels"]) for b in batch)
        labels = torch.full((len(batch), width), -100)
        for i, b in enumerate(batch):
            labels[i, : len(b["labels"])] = torch.tensor(b["labels"])
        return {**padded, "labels": labels}

    trainer_class = Trainer if data_args.stock else SquareLossTrainer
    trainer = trainer_class(
        model=model,
        args=training_args,
        data_collator=collate,
        train_dataset=datasets["train"] if training_args.do_train else None,
        eval_dataset=datasets["eval"] if training_args.do_eval else None,
    )
    print("TRAINER BUILT", flush=True)

    # 6. train, evaluate, card
    if training_args.do_train:
        trainer.train()
        trainer.save_model()
    metrics = trainer.evaluate() if training_args.do_eval else {}
    trainer.create_model_card(
        tasks="automatic-speech-recognition", tags=["automatic-speech-recognition", "an4"]
    )
    print("METRICS " + json.dumps(metrics), flush=True)
    return metrics


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
