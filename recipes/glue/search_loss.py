#!/usr/bin/env python
"""Search the loss's parameters on a GLUE task with ``Trainer.hyperparameter_search``: the square loss's (k, M) or
TCE's alpha, in the registry's ranges (``hf_squareloss.search.loss_search_space``), over optuna or Ray Tune. Each
trial fine-tunes the model with its values and is scored on the validation split by the task's GLUE metrics (their
sum, maximised, as transformers' default objective). Prints every trial and the best, and writes them to
``<output_dir>/search_result.json``.

    python recipes/glue/search_loss.py --task_name sst2 --data_dir ../shared/data/glue/SST-2 \\
        --model_name_or_path ../shared/models/paraphrase-MiniLM-L3-v2 --loss square --backend optuna --n_trials 8

``--backend ray`` starts a local Ray on this machine's cores (``--num_cpus``), one trial per ``--cpus_per_trial``.
See recipes/glue/README.md, "Searching the loss's parameters".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from hf_squareloss import SquareLossTrainer, SquareLossTrainingArguments
from hf_squareloss.glue.data import load_glue
from hf_squareloss.glue.metrics import glue_scores
from hf_squareloss.glue.tasks import get_task
from hf_squareloss.search import loss_search_space

LOSSES = {"square": "the square loss's (k, M)", "tce": "TCE's alpha"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--task_name", default="sst2", help="GLUE task (default: %(default)s)")
    p.add_argument("--data_dir", default=None, help="the task's original TSV files (default: the Hub)")
    p.add_argument("--model_name_or_path", required=True, help="model to fine-tune (a folder or a Hub id)")
    p.add_argument("--loss", choices=list(LOSSES), default="square", help="what to search: " + ", ".join(
        f"{k}: {v}" for k, v in LOSSES.items()))  # fmt: skip
    p.add_argument("--backend", choices=["optuna", "ray"], default="optuna", help="search backend")
    p.add_argument("--n_trials", type=int, default=8, help="number of trials (default: %(default)s)")
    p.add_argument("--output_dir", default="search_output", help="trials' folders and search_result.json")
    p.add_argument("--max_train_samples", type=int, default=None, help="first N training examples")
    p.add_argument("--max_eval_samples", type=int, default=None, help="first N validation examples")
    p.add_argument(
        "--num_train_epochs", type=float, default=2.0, help="epochs per trial (default: %(default)s)"
    )
    p.add_argument("--learning_rate", type=float, default=5e-5, help="(default: %(default)s)")
    p.add_argument("--per_device_train_batch_size", type=int, default=32, help="(default: %(default)s)")
    p.add_argument("--max_seq_length", type=int, default=128, help="(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of every trial (default: %(default)s)")
    p.add_argument("--num_cpus", type=int, default=None, help="ray: CPUs of the local Ray (default: all)")
    p.add_argument("--cpus_per_trial", type=int, default=1, help="ray: CPUs per trial (default: %(default)s)")
    ns = p.parse_args(argv)
    if ns.n_trials < 1:
        p.error(f"--n_trials must be >= 1, got {ns.n_trials}")
    return ns


def datasets_of(ns: argparse.Namespace, tokenizer: Any) -> tuple[Any, Any]:
    """The task's training and (first) validation split, as the GLUE recipe loads them, tokenized."""
    task = get_task(ns.task_name)
    splits = load_glue(task, ns.data_dir, splits=["train", task.eval_splits[0]]).splits
    train, dev = splits["train"], splits[task.eval_splits[0]]
    if ns.max_train_samples:
        train = train.select(range(min(ns.max_train_samples, len(train))))
    if ns.max_eval_samples:
        dev = dev.select(range(min(ns.max_eval_samples, len(dev))))

    def encode(batch: dict[str, list]) -> Any:
        texts = [batch[c] for c in task.text_columns]
        return tokenizer(*texts, truncation=True, max_length=ns.max_seq_length)

    return tuple(
        ds.map(encode, batched=True, remove_columns=[*task.text_columns, "idx"]) for ds in (train, dev)
    )


def build_trainer(ns: argparse.Namespace) -> SquareLossTrainer:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    task = get_task(ns.task_name)
    tokenizer = AutoTokenizer.from_pretrained(ns.model_name_or_path)
    train, dev = datasets_of(ns, tokenizer)

    def model_init() -> Any:
        return AutoModelForSequenceClassification.from_pretrained(
            ns.model_name_or_path, num_labels=task.num_labels, id2label=task.id2label, label2id=task.label2id
        )

    def compute_metrics(prediction: Any) -> dict[str, float]:
        logits = (
            prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        )
        return glue_scores(task.name, np.argmax(logits, axis=-1), prediction.label_ids)

    args = SquareLossTrainingArguments(
        output_dir=ns.output_dir,
        loss_type=ns.loss,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        logging_strategy="epoch",
        num_train_epochs=ns.num_train_epochs,
        learning_rate=ns.learning_rate,
        per_device_train_batch_size=ns.per_device_train_batch_size,
        seed=ns.seed,
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
    )
    return SquareLossTrainer(
        model_init=model_init,
        args=args,
        train_dataset=train,
        eval_dataset=dev,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
    )


def search(ns: argparse.Namespace) -> dict[str, Any]:
    """Run the search; return the best trial and every trial (their hyper-parameters and objective)."""
    trainer = build_trainer(ns)
    space = loss_search_space(ns.loss, backend=ns.backend)
    if ns.backend == "optuna":
        import optuna

        storage = optuna.storages.InMemoryStorage()
        best = trainer.hyperparameter_search(
            hp_space=space, backend="optuna", n_trials=ns.n_trials, direction="maximize", storage=storage,
            study_name="loss", sampler=optuna.samplers.TPESampler(seed=ns.seed),
        )  # fmt: skip
        trials = [
            {"trial": str(t.number), "objective": t.value, "hyperparameters": t.params}
            for t in optuna.load_study(study_name="loss", storage=storage).trials
        ]
    else:
        import ray

        ray.init(address="local", num_cpus=ns.num_cpus, include_dashboard=False, log_to_driver=False)
        try:
            best = trainer.hyperparameter_search(
                hp_space=space, backend="ray", n_trials=ns.n_trials, direction="maximize",
                resources_per_trial={"cpu": ns.cpus_per_trial}, storage_path=str(Path(ns.output_dir).resolve() / "ray"),
                name="loss",
            )  # fmt: skip
        finally:
            ray.shutdown()
        trials = [
            {"trial": t.trial_id, "objective": t.last_result.get("objective"), "hyperparameters": t.config}
            for t in best.run_summary.trials
        ]
    return {
        "task": ns.task_name,
        "loss": ns.loss,
        "backend": ns.backend,
        "best": {"trial": best.run_id, "objective": best.objective, "hyperparameters": best.hyperparameters},
        "trials": trials,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ns = parse_args(argv)
    result = search(ns)
    out = Path(ns.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "search_result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for trial in result["trials"]:
        print(f"trial {trial['trial']}: objective {trial['objective']:.4f} {trial['hyperparameters']}")
    best = result["best"]
    print(f"best trial {best['trial']}: objective {best['objective']:.4f} {best['hyperparameters']}")
    return result


if __name__ == "__main__":
    main()
