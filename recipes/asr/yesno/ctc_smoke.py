#!/usr/bin/env python3
"""Seconds-long CTC smoke test on OpenSLR yesno: Tamed CTC (or plain CTC) trains a small recogniser on real audio.

Each of the 60 recordings holds 8 Hebrew words "yes"/"no"; the file name is the label sequence
(``0_1_1_0_....wav``, 1 = yes). The first 50 files (sorted) train, the last 10 are held out. Features are 40 log
mel bands at 8 kHz; the model is a small 1-D convolutional network with a CTC head over
``{blank, no, yes}``; the loss is :func:`hf_squareloss.speechbrain.tamed_ctc_loss` with ``--alpha`` (0 = SpeechBrain's
CTC). Greedy CTC decoding gives the token error rate on the held-out files.

    python ctc_smoke.py                      # plain CTC
    python ctc_smoke.py --alpha 0.5          # Tamed CTC
    python ctc_smoke.py --data_folder /path/to/waves_yesno --epochs 60

Prints one line per epoch and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from speechbrain.dataio.dataio import length_to_mask
from speechbrain.lobes.features import Fbank
from speechbrain.utils.edit_distance import wer_details_for_batch
from torch import nn

from hf_squareloss.shared_data import shared_dir
from hf_squareloss.speechbrain import tamed_ctc_loss
from hf_squareloss.speechbrain.audio import read_mono

SAMPLE_RATE = 8000
BLANK = 0  # tokens: 0 blank, 1 "no" (label 0), 2 "yes" (label 1)


def load_yesno(folder: Path) -> list[tuple[str, torch.Tensor, list[int]]]:
    """``[(name, waveform, tokens)]`` sorted by name; ``ValueError`` for a file name that is not a label sequence."""
    files = sorted(folder.glob("*.wav"))
    if not files:
        raise FileNotFoundError(f"no .wav files in {folder} (expected OpenSLR yesno's waves_yesno)")
    items = []
    for path in files:
        labels = path.stem.split("_")
        if not labels or any(label not in ("0", "1") for label in labels):
            raise ValueError(f"{path}: file name is not a sequence of 0/1 labels")
        items.append((path.stem, read_mono(path, SAMPLE_RATE), [1 + int(label) for label in labels]))
    return items


class SmallCTCModel(nn.Module):
    """A 1-D convolutional CTC model: four strided convolutions (16x fewer frames: 160 ms a frame, about 4 frames a
    word) and a dilated one, each with batch normalisation and ReLU, then a linear CTC head."""

    def __init__(self, n_mels: int = 40, hidden: int = 96, num_classes: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = n_mels
        for stride, dilation in ((2, 1), (2, 1), (2, 1), (2, 1), (1, 2)):
            layers += [
                nn.Conv1d(channels, hidden, 5, stride=stride, padding=2 * dilation, dilation=dilation),
                nn.BatchNorm1d(hidden),
                nn.ReLU(),
            ]
            channels = hidden
        self.conv = nn.Sequential(*layers)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.conv(feats.transpose(1, 2)).transpose(1, 2)
        return torch.log_softmax(self.head(x), dim=-1)


def _batch(items, features: Fbank) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    waves = [w for _, w, _ in items]
    longest = max(w.shape[0] for w in waves)
    padded = torch.stack([nn.functional.pad(w, (0, longest - w.shape[0])) for w in waves])
    wave_lens = torch.tensor([w.shape[0] / longest for w in waves])
    feats = features(padded)
    mask = length_to_mask(wave_lens * feats.shape[1], feats.shape[1]).unsqueeze(-1)
    count = mask.sum(1, keepdim=True)
    mean = (feats * mask).sum(1, keepdim=True) / count
    std = (((feats - mean) * mask) ** 2).sum(1, keepdim=True).div(count).sqrt().clamp_min(1e-5)
    feats = (feats - mean) / std * mask  # per-utterance mean and variance normalisation
    tokens = [t for _, _, t in items]
    width = max(len(t) for t in tokens)
    targets = torch.tensor([t + [0] * (width - len(t)) for t in tokens])
    target_lens = torch.tensor([len(t) / width for t in tokens])
    return feats, wave_lens, targets, target_lens


def greedy_ctc(log_probs: torch.Tensor, lens: torch.Tensor) -> list[list[int]]:
    """Best path, repeats merged, blanks removed."""
    out = []
    for row, n in zip(log_probs.argmax(-1), (lens * log_probs.shape[1]).round().int(), strict=True):
        path = row[: int(n)].tolist()
        out.append([t for i, t in enumerate(path) if t != BLANK and (i == 0 or t != path[i - 1])])
    return out


def run(
    data_folder: Path | None = None,
    *,
    alpha: float = 0.0,
    epochs: int = 25,
    lr: float = 3e-3,
    batch_size: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Train and evaluate; returns ``{"losses": [...], "test_token_error_rate": ..., ...}``."""
    started = time.time()
    torch.manual_seed(seed)
    folder = Path(data_folder) if data_folder else shared_dir("data") / "yesno" / "waves_yesno"
    items = load_yesno(folder)
    train, test = items[:50], items[50:]
    features = Fbank(sample_rate=SAMPLE_RATE, n_fft=256, n_mels=40)
    model = SmallCTCModel()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(train), generator=generator).tolist()
        total = 0.0
        for start in range(0, len(order), batch_size):
            feats, lens, targets, target_lens = _batch(
                [train[i] for i in order[start : start + batch_size]], features
            )
            loss = tamed_ctc_loss(model(feats), targets, lens, target_lens, BLANK, alpha=alpha)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
        losses.append(total / -(-len(order) // batch_size))
        print(f"epoch {epoch}: train loss {losses[-1]:.4f}", flush=True)
    model.eval()
    with torch.no_grad():
        feats, lens, targets, target_lens = _batch(test, features)
        hyps = greedy_ctc(model(feats), lens)
    refs = [t for _, _, t in test]
    details = wer_details_for_batch([n for n, _, _ in test], refs, hyps)
    errors = sum(d["num_edits"] for d in details)
    result = {
        "alpha": alpha,
        "epochs": epochs,
        "losses": [round(v, 4) for v in losses],
        "test_token_error_rate": round(100.0 * errors / sum(len(r) for r in refs), 2),
        "test_utterances": len(test),
        "wall_time_s": round(time.time() - started, 1),
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data_folder", default=None, help="waves_yesno (default: $HF_SQUARELOSS_DATA/yesno/...)"
    )
    parser.add_argument("--alpha", type=float, default=0.0, help="Tamed CTC strength (0 = plain CTC)")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch_size", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run(
        args.data_folder,
        alpha=args.alpha,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
    )


if __name__ == "__main__":
    main()
