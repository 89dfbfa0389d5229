"""Published numbers to put beside ours.

Hui & Belkin (ICLR 2021) fine-tune BERT on GLUE with the square loss and with cross-entropy and report the mean of
5 seeds on the dev sets (accuracy in %, MRPC's F1 in %).
"""

from __future__ import annotations

__all__ = ["HUI_BELKIN_BERT", "HUI_BELKIN_SEEDS"]

HUI_BELKIN_SEEDS = 5

# task -> metric -> loss type -> value (%)
HUI_BELKIN_BERT: dict[str, dict[str, dict[str, float]]] = {
    "mrpc": {"accuracy": {"square": 83.8, "ce": 82.1}, "f1": {"square": 88.1, "ce": 86.7}},
    "sst2": {"accuracy": {"square": 94.0, "ce": 93.9}},
    "qnli": {"accuracy": {"square": 90.6, "ce": 90.6}},
    "qqp": {"accuracy": {"square": 88.9, "ce": 88.9}},
}
