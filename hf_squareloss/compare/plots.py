"""The sweep's figures (PNG, matplotlib's Agg backend).

* ``accuracy_vs_noise.png``: the main validation metric against the label-noise rate, one line per loss (mean and
  standard deviation over seeds), as in the TCE paper's tables;
* ``learning_curves.png``: the validation metric after each epoch, one line per loss (mean over seeds, band of one
  standard deviation), per task, protocol and noise rate (every cell of the report), as in Hui & Belkin's learning
  curves; the last quarter of the epochs, where the convergence rule looks, is shaded, and a loss with runs still
  improving at the end is dashed;
* ``calibration.png``: ECE and NLL of the served probabilities before and after temperature scaling, per loss
  and noise rate (mean and standard deviation over seeds);
* ``seed_spread.png``: every seed's result per loss, with the mean and standard deviation, per task and noise rate,
  as in Hui & Belkin's figure on the variance over seeds.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..registry import loss_types
from ..runs.families import family_of

__all__ = [
    "plot_accuracy_vs_noise",
    "plot_calibration",
    "plot_learning_curves",
    "plot_seed_spread",
    "write_plots",
]

_PROTOCOLS = ("early_stopping", "tce_paper")  # the runs that choose their own epochs


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _losses(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The loss types present, in the registry's order (``ce`` first)."""
    present = {r["loss_type"] for r in rows}
    return [loss for loss in loss_types() if loss in present]


def _color(loss: str) -> str:
    """One colour per loss type, the same in every figure."""
    return f"C{loss_types().index(loss) % 10}"


def _label(metric: str) -> str:
    """``accuracy`` -> ``validation accuracy``; ``test_accuracy`` -> ``test accuracy``."""
    if metric.startswith("test_"):
        return metric.replace("_", " ")
    return "validation " + metric.replace("_", " ")


def _grid(plt: Any, nrows: int, ncols: int, width: float = 4.2, height: float = 3.2):
    figsize = (max(width * ncols, 7.0), height * nrows + 0.6)
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False)
    return fig, axes


def _finish(plt: Any, fig: Any, title: str, path: Path) -> Path:
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_accuracy_vs_noise(rows: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    rows = [r for r in rows if r["protocol"] in _PROTOCOLS]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    if not tasks:
        return None
    plt = _pyplot()
    fig, axes = _grid(plt, 1, len(tasks))
    losses = _losses(rows)
    for ax, task in zip(axes[0], tasks, strict=True):
        metric = family_of(task).main_metric(task)
        all_rates = sorted({r["noise_rate"] for r in rows if r["task"] == task})
        dodge = 0.01 * (max(all_rates) - min(all_rates) or 1.0)
        for k, loss in enumerate(losses):
            rates = sorted({r["noise_rate"] for r in rows if r["task"] == task and r["loss_type"] == loss})
            means, stds = [], []
            for rate in rates:
                values = [
                    100 * r[metric]
                    for r in rows
                    if r["task"] == task
                    and r["loss_type"] == loss
                    and r["noise_rate"] == rate
                    and r[metric] is not None
                ]
                means.append(statistics.fmean(values))
                stds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
            if rates:
                shift = (k - (len(losses) - 1) / 2) * dodge
                xs = [rate + shift for rate in rates]
                ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=loss, color=_color(loss))
        ax.set_xticks(all_rates, [f"{rate:g}" for rate in all_rates])
        ax.set_title(task)
        ax.set_xlabel("label-noise rate (training labels)")
        ax.set_ylabel(f"{_label(metric)} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return _finish(plt, fig, "Validation metric against label noise (mean ± std over seeds)", path)


def _curve(
    histories: Sequence[Sequence[Mapping[str, Any]]], key: str
) -> tuple[list[float], list[float], list[float]]:
    """Mean and std over runs of ``key`` per epoch (epochs that at least one run reached)."""
    by_epoch: dict[float, list[float]] = {}
    for history in histories:
        for entry in history:
            if entry.get(key) is not None:
                by_epoch.setdefault(float(entry["epoch"]), []).append(100 * float(entry[key]))
    epochs = sorted(by_epoch)
    means = [statistics.fmean(by_epoch[e]) for e in epochs]
    stds = [statistics.stdev(by_epoch[e]) if len(by_epoch[e]) > 1 else 0.0 for e in epochs]
    return epochs, means, stds


def plot_learning_curves(rows: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """Every cell's validation curve: a panel per task, protocol and noise rate, a line per loss (mean over seeds,
    band of one standard deviation). The last quarter of the epochs, where the convergence rule looks, is shaded; a
    loss with runs still improving at the end is dashed and says how many in the legend."""
    rows = [r for r in rows if r.get("history")]
    panels = list(dict.fromkeys((r["task"], r["protocol"], r["noise_rate"]) for r in rows))
    if not panels:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    groups = list(dict.fromkeys((task, protocol) for task, protocol, _ in panels))
    rates = sorted({rate for *_, rate in panels})
    losses_max = max(
        len(_losses([r for r in rows if r["task"] == t and r["protocol"] == q])) for t, q in groups
    )
    fig, axes = _grid(plt, len(groups), len(rates), width=4.6, height=3.4 + 0.22 * ((losses_max + 1) // 2))
    for i, (task, protocol) in enumerate(groups):
        metric = family_of(task).history_metric(task)
        for j, rate in enumerate(rates):
            ax = axes[i][j]
            members = [
                r for r in rows if (r["task"], r["protocol"], r["noise_rate"]) == (task, protocol, rate)
            ]
            if not members:
                ax.set_visible(False)
                continue
            epochs_run = max(float(r.get("epochs_trained") or 0.0) for r in members)
            if epochs_run:
                ax.axvspan(0.75 * epochs_run, epochs_run, color="0.9", zorder=0, label="_last quarter")
            for loss in _losses(members):
                runs = [r for r in members if r["loss_type"] == loss]
                epochs, means, stds = _curve([r["history"] for r in runs], f"eval_{metric}")
                improving = sum(r.get("converged") is False for r in runs)
                label = loss + (f" ({improving}/{len(runs)} still improving)" if improving else "")
                style = "--" if improving else "-"
                ax.plot(epochs, means, style, marker="o", markersize=2, label=label, color=_color(loss))
                low = [m - s for m, s in zip(means, stds, strict=True)]
                high = [m + s for m, s in zip(means, stds, strict=True)]
                ax.fill_between(epochs, low, high, color=_color(loss), alpha=0.12)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
            ax.set_title(f"{task}, {protocol.replace('_', ' ')}, label noise {rate:g}", fontsize="medium")
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"{_label(metric)} (%)")
            ax.grid(alpha=0.3)
            ax.legend(
                fontsize="x-small", ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False
            )
    title = (
        "Validation metric after each epoch (mean over seeds, band: ± 1 std; shaded: the last quarter of the "
        "epochs; dashed: runs still improving)"
    )
    return _finish(plt, fig, title, path)


def plot_seed_spread(rows: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    rows = [r for r in rows if r["protocol"] in _PROTOCOLS]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    rates = sorted({r["noise_rate"] for r in rows})
    if not tasks:
        return None
    plt = _pyplot()
    fig, axes = _grid(plt, len(tasks), len(rates), width=4.0)
    losses = _losses(rows)
    for i, task in enumerate(tasks):
        metric = family_of(task).history_metric(task)
        for j, rate in enumerate(rates):
            ax = axes[i][j]
            for k, loss in enumerate(losses):
                values = [
                    100 * r[metric]
                    for r in rows
                    if r["task"] == task
                    and r["noise_rate"] == rate
                    and r["loss_type"] == loss
                    and r[metric] is not None
                ]
                if not values:
                    continue
                ax.scatter([k] * len(values), values, s=18, alpha=0.7, zorder=3, color=_color(loss))
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                ax.errorbar(
                    [k + 0.18], [statistics.fmean(values)], yerr=[std], fmt="_", color="black", capsize=4
                )
            ax.set_xticks(range(len(losses)), losses, rotation=20)
            ax.set_title(f"{task}, label noise {rate:g}")
            ax.set_ylabel(f"{_label(metric)} (%)")
            ax.grid(alpha=0.3, axis="y")
    return _finish(plt, fig, "Spread over seeds: each dot is one seed; black: mean ± std", path)


def plot_calibration(rows: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """ECE and NLL before (hatched) and after temperature scaling, per loss and noise rate, mean ± std over seeds."""
    rows = [r for r in rows if r["protocol"] in _PROTOCOLS and r.get("ece_before") is not None]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    if not tasks:
        return None
    plt = _pyplot()
    fig, axes = _grid(plt, len(tasks), 2)
    losses = _losses(rows)
    width = 0.8 / (2 * len(losses))
    for i, task in enumerate(tasks):
        rates = sorted({r["noise_rate"] for r in rows if r["task"] == task})
        for j, (name, scale, unit) in enumerate((("ece", 100.0, "ECE (%)"), ("nll", 1.0, "NLL (nats)"))):
            ax = axes[i][j]
            for k, loss in enumerate(losses):
                for h, stage in enumerate(("before", "after")):
                    xs, means, stds = [], [], []
                    for x, rate in enumerate(rates):
                        values = [
                            scale * r[f"{name}_{stage}"]
                            for r in rows
                            if r["task"] == task
                            and r["noise_rate"] == rate
                            and r["loss_type"] == loss
                            and r.get(f"{name}_{stage}") is not None
                        ]
                        if values:
                            xs.append(x + (2 * k + h - len(losses) + 0.5) * width)
                            means.append(statistics.fmean(values))
                            stds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
                    if xs:
                        ax.bar(
                            xs,
                            means,
                            width,
                            yerr=stds,
                            capsize=2,
                            color=_color(loss),
                            alpha=0.45 if stage == "before" else 1.0,
                            hatch="//" if stage == "before" else None,
                            label=f"{loss} {stage}",
                        )
            ax.set_xticks(range(len(rates)), [f"noise {r:g}" for r in rates])
            ax.set_title(f"{task}: {unit}, before (hatched) / after temperature scaling", fontsize="small")
            ax.set_ylabel(unit)
            ax.grid(alpha=0.3, axis="y")
            ax.legend(fontsize="x-small", ncol=2)
    return _finish(plt, fig, "Calibration of the served probabilities (mean ± std over seeds)", path)


def write_plots(rows: Sequence[Mapping[str, Any]], folder: Path) -> list[Path]:
    """Write the figures into ``folder``; return the paths written."""
    written = [
        plot_accuracy_vs_noise(rows, folder / "accuracy_vs_noise.png"),
        plot_learning_curves(rows, folder / "learning_curves.png"),
        plot_seed_spread(rows, folder / "seed_spread.png"),
        plot_calibration(rows, folder / "calibration.png"),
    ]
    return [p for p in written if p is not None]
