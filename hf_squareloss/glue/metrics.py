"""GLUE's metrics as an offline ``evaluate`` module.

``evaluate.load("glue", ...)`` downloads its script from the Hub; this module computes the same numbers without
network access. Use it through the ``evaluate`` API either way::

    import evaluate
    from hf_squareloss.glue import metrics

    metric = evaluate.load(metrics.__file__, "mrpc")   # evaluate's loader on this local file
    metric = metrics.Glue(config_name="mrpc")          # or the class directly
    metric.compute(predictions=[1, 0, 1], references=[1, 1, 1])  # {'accuracy': 0.667, 'f1': 0.8}

The definitions are GLUE's: accuracy for every classification task; in addition the F1 score of the positive
class (label 1, "equivalent" / "duplicate") for MRPC and QQP; the Matthews correlation for CoLA; the Pearson and
Spearman correlations for STS-B. This file imports only libraries, so that ``evaluate.load`` can copy it alone.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

_DESCRIPTION = (
    "GLUE metrics (accuracy, F1 of the positive class, Matthews correlation, Pearson/Spearman), offline."
)
_CITATION = """@inproceedings{wang2019glue,
  title     = {{GLUE}: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},
  author    = {Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer and Bowman, Samuel R.},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2019}
}"""
_INPUTS = """
Args:
    predictions: predicted labels (integers), or predicted scores for ``stsb``.
    references: gold labels (integers), or gold scores for ``stsb``.
Returns, depending on the configuration:
    cola: ``matthews_correlation``; mrpc, qqp: ``accuracy`` and ``f1``; stsb: ``pearson`` and ``spearmanr``;
    sst2, mnli, mnli_matched, mnli_mismatched, qnli, rte, wnli, ax: ``accuracy``.
"""

CONFIGS = (
    "cola",
    "sst2",
    "mrpc",
    "qqp",
    "stsb",
    "mnli",
    "mnli_matched",
    "mnli_mismatched",
    "qnli",
    "rte",
    "wnli",
    "ax",
)


def glue_scores(config_name: str, predictions, references) -> dict[str, float]:
    """The GLUE metrics of ``config_name`` for arrays of predictions and references."""
    if config_name not in CONFIGS:
        raise KeyError(f"unknown GLUE configuration {config_name!r}; choose one of {list(CONFIGS)}")
    preds = np.asarray(predictions)
    refs = np.asarray(references)
    if preds.shape != refs.shape or preds.ndim != 1:
        raise ValueError(
            f"predictions and references must be 1-D and of equal length, got {preds.shape} and {refs.shape}"
        )
    if preds.size == 0:
        raise ValueError("no predictions to score")
    if config_name == "stsb":
        preds, refs = preds.astype(np.float64), refs.astype(np.float64)
        return {
            "pearson": float(pearsonr(preds, refs)[0]),
            "spearmanr": float(spearmanr(preds, refs)[0]),
        }
    if config_name == "cola":
        return {"matthews_correlation": float(matthews_corrcoef(refs, preds))}
    scores = {"accuracy": float((preds == refs).mean())}
    if config_name in ("mrpc", "qqp"):
        scores["f1"] = float(f1_score(refs, preds, pos_label=1, average="binary", zero_division=0.0))
    return scores


class Glue(evaluate.Metric):
    """The GLUE metric of one task; ``config_name`` is the task's ``nyu-mll/glue`` configuration name."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in CONFIGS:
            raise KeyError(f"unknown GLUE configuration {self.config_name!r}; choose one of {list(CONFIGS)}")
        dtype = "float64" if self.config_name == "stsb" else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value(dtype), "references": datasets.Value(dtype)}
            ),
            format="numpy",
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        return glue_scores(self.config_name, predictions, references)
