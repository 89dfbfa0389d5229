"""The common ``train.py`` of ``recipes/asr/<corpus>``: arguments, data preparation, datasets, training, evaluation.

A corpus recipe supplies a *prepare* function (corpus layout -> CSV manifests) and a *tokenizer factory*, then calls
:func:`run_recipe`::

    python train.py hparams/an4.yaml --loss_type square --seed 2        # any YAML key: --key value
    torchrun --nproc_per_node 4 train.py hparams/an4.yaml                # DDP on 4 GPUs (or CPU processes)
    accelerate launch --num_processes 4 train.py hparams/an4.yaml        # same, launched by accelerate

Manifests are CSV files with the columns ``ID, duration, wav, spk_id, text`` (``text`` in the recipe's target units:
words, or phones for TIMIT). The run writes ``<output_folder>/results.json``: the loss, the best validation figures
(greedy decoding), and for every evaluated set ``<set>_wer``/``<set>_cer`` (beam search, percent; ``_per`` for
phones); with a test set also ``test_wer`` and ``test_cer``. A run that is interrupted resumes from its last
checkpoint when started again with the same ``output_folder``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from hyperpyyaml import load_hyperpyyaml

from ..environment import torchaudio_guard
from ..registry import LossConfig
from ..runs.lifecycle import end_process_group
from .asr_brain import JointCTCAttentionBrain
from .audio import read_mono
from .card import RESULTS_KIND, write_asr_card
from .units import BOS_INDEX, EOS_INDEX, Tokenizer

with torchaudio_guard():
    import speechbrain as sb
    from speechbrain.utils.distributed import if_main_process, run_on_main

__all__ = ["build_datasets", "run_recipe"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------------------------------
def build_datasets(
    manifests: Mapping[str, str | Path], tokenizer: Tokenizer, hparams: Mapping[str, Any]
) -> dict[str, sb.dataio.dataset.DynamicItemDataset]:
    """DynamicItemDatasets with ``sig``, ``text``, ``tokens``, ``tokens_bos``, ``tokens_eos`` for each manifest.

    The training set is filtered to ``max_duration`` seconds (``hparams``, optional) and every set is sorted by
    duration (the training batches are then drawn in random order by the sampler).
    """
    sample_rate = int(hparams["sample_rate"])

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav: str) -> torch.Tensor:
        return read_mono(wav, sample_rate)

    @sb.utils.data_pipeline.takes("text")
    @sb.utils.data_pipeline.provides("text", "tokens_bos", "tokens_eos", "tokens")
    def text_pipeline(text: str):
        yield text
        ids = tokenizer.encode(text)
        yield torch.LongTensor([BOS_INDEX, *ids])
        yield torch.LongTensor([*ids, EOS_INDEX])
        yield torch.LongTensor(ids)

    datasets = {}
    for name, path in manifests.items():
        dataset = sb.dataio.dataset.DynamicItemDataset.from_csv(csv_path=str(path))
        if name == "train" and hparams.get("max_duration"):
            dataset = dataset.filtered_sorted(
                sort_key="duration", key_max_value={"duration": float(hparams["max_duration"])}
            )
        else:
            dataset = dataset.filtered_sorted(sort_key="duration")
        sb.dataio.dataset.add_dynamic_item([dataset], audio_pipeline)
        sb.dataio.dataset.add_dynamic_item([dataset], text_pipeline)
        sb.dataio.dataset.set_output_keys(
            [dataset], ["id", "sig", "text", "tokens_bos", "tokens_eos", "tokens"]
        )
        datasets[name] = dataset
    return datasets


def _train_loader_kwargs(dataset: Any, hparams: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = dict(hparams["train_dataloader_opts"])
    max_batch_length = kwargs.pop("max_batch_length", None)
    if max_batch_length is not None:
        sampler = sb.dataio.sampler.DynamicBatchSampler(
            dataset,
            max_batch_length=float(max_batch_length),
            num_buckets=int(kwargs.pop("num_buckets", 10)),
            length_func=lambda item: float(item["duration"]),
            shuffle=True,
            batch_ordering="random",
            max_batch_ex=kwargs.pop("max_batch_ex", None),
            seed=int(hparams["seed"]),
        )
        kwargs["batch_sampler"] = sampler
    else:
        kwargs.setdefault("shuffle", True)
    return kwargs


def _fill_training_steps(
    hparams: Mapping[str, Any], dataset: Any, loader_kwargs: Mapping[str, Any], accumulation: int
) -> None:
    """Set a linear-decay scheduler's ``num_training_steps`` when the YAML leaves it at 0: optimiser steps of
    ``number_of_epochs`` epochs of this process (batches are split between DDP processes)."""
    scheduler = hparams.get("lr_annealing")
    if scheduler is None or getattr(scheduler, "num_training_steps", None) != 0:
        return
    sampler = loader_kwargs.get("batch_sampler")
    if sampler is not None:
        batches = len(sampler)
    else:
        batches = math.ceil(len(dataset) / int(loader_kwargs.get("batch_size", 1)))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    steps_per_epoch = math.ceil(batches / world_size / max(int(accumulation), 1))
    scheduler.num_training_steps = max(1, steps_per_epoch * int(hparams["number_of_epochs"]))
    logger.info("linear learning-rate decay over %d optimiser steps", scheduler.num_training_steps)


# --------------------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------------------
def _default_cpu_backend(run_opts: Any) -> Any:
    """DDP over CPU processes needs gloo: pick it (and the CPU device) when launched by torchrun/accelerate without
    GPUs and the user chose nothing. Returns the (possibly updated) run options."""
    launched = os.environ.get("RANK") is not None and os.environ.get("LOCAL_RANK") is not None
    if not launched or torch.cuda.is_available() or "distributed_backend" in run_opts.overridden_args:
        return run_opts
    changes: dict[str, Any] = {"distributed_backend": "gloo"}
    if run_opts.device is None:
        changes["device"] = "cpu"
    return dataclasses.replace(run_opts, **changes, overridden_args={*run_opts.overridden_args, *changes})


def run_recipe(
    argv: Sequence[str],
    *,
    prepare: Callable[..., Mapping[str, Path]],
    prepare_kwargs: Callable[[Mapping[str, Any]], dict[str, Any]],
    make_tokenizer: Callable[[Mapping[str, Any], Mapping[str, Path]], Tokenizer],
    error_rate_name: str = "WER",
    corpus: str | None = None,
) -> dict[str, Any]:
    """Run a recipe: returns the content of ``results.json``.

    Args:
        argv: ``[hparams.yaml, --key value, ...]`` (SpeechBrain's command line).
        prepare: the corpus's prepare function; called on the main process with ``prepare_kwargs(hparams)``; returns
            the manifests by set name (``train``, ``valid`` and any test sets).
        make_tokenizer: builds (main process first) then loads the tokenizer from the hparams and manifests.
        error_rate_name: ``"WER"``, or ``"PER"`` for phone recognition.
        corpus: recorded in ``results.json`` and the model card; default: the recipe folder's name
            (``recipes/asr/<corpus>/hparams/x.yaml``).
    """
    started = time.time()
    hparams_file, run_opts, overrides = sb.parse_arguments(list(argv))
    run_opts = _default_cpu_backend(run_opts)
    with open(hparams_file, encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    sb.utils.distributed.ddp_init_group(run_opts)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"], hyperparams_to_save=hparams_file, overrides=overrides
    )
    loss = getattr(hparams["seq_cost"], "config", None)
    if not isinstance(loss, LossConfig):
        raise ValueError(
            f"seq_cost in {hparams_file} must be a hf_squareloss.speechbrain.LogitsLoss (it receives the decoder's "
            f"raw logits), got {type(hparams['seq_cost']).__name__}"
        )
    if hparams.get("seq_loss_from_hidden_states"):
        from ..registry import hidden_state_function

        hidden_state_function(loss.loss_type)  # ValueError now for a loss without a hidden-state form

    run_on_main(prepare, kwargs=prepare_kwargs(hparams))
    manifests = prepare(**prepare_kwargs(hparams))  # every process: the files exist now, this only reads them
    if "train" not in manifests or "valid" not in manifests:
        raise ValueError(f"prepare must return 'train' and 'valid' manifests, got {sorted(manifests)}")

    run_on_main(make_tokenizer, args=[hparams, manifests])  # builds (and saves) it once
    tokenizer = make_tokenizer(hparams, manifests)  # every process loads what the main one saved
    if tokenizer.num_classes != int(hparams["output_neurons"]):
        raise ValueError(
            f"the tokenizer has {tokenizer.num_classes} classes (blank, bos, eos and units) but the model "
            f"output_neurons={hparams['output_neurons']}; fix output_neurons in {hparams_file}"
        )

    datasets = build_datasets(manifests, tokenizer, hparams)
    results_file = Path(hparams["output_folder"]) / "results.json"
    brain = JointCTCAttentionBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        tokenizer=tokenizer,
        results_file=results_file,
        calibration_set=datasets["valid"],
        calibration_loader_kwargs=hparams["valid_dataloader_opts"],
        fit_score_scale=bool(hparams.get("calibrate_score_scale", True)),
        error_rate_name=error_rate_name,
    )
    brain.update_results(
        {
            "kind": RESULTS_KIND,
            "loss": loss.to_dict(),
            "ctc_weight": float(hparams["ctc_weight"]),
            "ctc_alpha": float(hparams.get("ctc_alpha", 0.0)),
            "seed": int(hparams["seed"]),
            "number_of_epochs": int(hparams["number_of_epochs"]),
            "units": hparams["token_type"],
            "output_neurons": int(hparams["output_neurons"]),
            "world_size": int(os.environ.get("WORLD_SIZE", "1")),
            "manifests": {name: str(path) for name, path in manifests.items()},
            "corpus": corpus or Path(hparams_file).resolve().parent.parent.name,
            "hyperparameters": _scalar_hparams(hparams),
            "versions": _versions(),
        }
    )
    train_loader_kwargs = _train_loader_kwargs(datasets["train"], hparams)
    _fill_training_steps(hparams, datasets["train"], train_loader_kwargs, brain.grad_accumulation_factor)
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=train_loader_kwargs,
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    trained = time.time()
    key = error_rate_name
    best = hparams["checkpointer"].find_checkpoint(min_key=key)
    if best is not None:
        greedy = {
            f"valid_greedy_{name.lower()}": best.meta[name] for name in (key, "CER") if name in best.meta
        }
        brain.update_results({"best_epoch": best.meta.get("epoch"), **greedy})
    brain.update_results({"train_wall_time_s": round(trained - started, 1)})
    run_on_main(_record_convergence, args=[results_file, key, int(hparams["number_of_epochs"])])
    test_sets = [name for name in manifests if name not in ("train", "valid")]
    eval_sets = ["valid", *test_sets] if hparams.get("beam_search_valid", True) else test_sets
    for name in eval_sets:
        brain.evaluate_set(name, datasets[name], hparams["test_dataloader_opts"])
    run_on_main(_finish_results, args=[brain, results_file, test_sets, key, started])
    end_process_group()  # every process leaves together, once the main one has written its files
    if not if_main_process():
        return {}
    return json.loads(results_file.read_text(encoding="utf-8"))


def _record_convergence(results_file: Path, key: str, epochs: int) -> None:
    """Main process: whether the run had finished learning, by the rule of :mod:`hf_squareloss.runs.convergence`
    on its greedy validation error rate (lower is better; the checkpoint it selects on)."""
    from ..runs.convergence import ERROR_RATE_TOLERANCE, judge

    results = json.loads(results_file.read_text(encoding="utf-8"))
    verdict = judge(
        results.get("history") or [],
        f"eval_{key.lower()}",
        greater_is_better=False,
        epochs=min(epochs, int(results.get("epochs") or epochs)),
        tolerance=ERROR_RATE_TOLERANCE,
    )
    results.update(converged=verdict.converged, convergence=verdict.to_dict())
    tmp = results_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(results_file)
    if verdict.converged is False:
        logger.warning("not converged: %s; train longer before comparing", verdict.reason)


def _finish_results(
    brain: JointCTCAttentionBrain, results_file: Path, test_sets: Sequence[str], key: str, started: float
) -> None:
    """Main process: the primary test set's figures, the wall time, and the model card."""
    results = json.loads(results_file.read_text(encoding="utf-8"))
    if test_sets:
        primary = test_sets[0]  # the first test set of the prepare function (e.g. test-clean)
        figures: dict[str, Any] = {
            "test_set": primary,
            f"test_{key.lower()}": results[f"{primary}_{key.lower()}"],
        }
        if key == "WER":
            figures["test_cer"] = results[f"{primary}_cer"]
        brain.update_results(figures)
    brain.update_results({"total_wall_time_s": round(time.time() - started, 1)})
    logger.info("results: %s", results_file)
    _write_card(results_file.parent)


# hyper-parameters that say where things are, not how the model was trained
_LOCATION_KEYS = ("folder", "file", "path", "dir")


def _scalar_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe's top-level numbers, flags and words (not objects, not paths), for the model card."""
    return {
        key: value
        for key, value in hparams.items()
        if isinstance(value, (bool, int, float, str))
        and not any(word in key for word in _LOCATION_KEYS)
        and not (isinstance(value, str) and ("/" in value or len(value) > 40))
    }


def _versions() -> dict[str, str]:
    from .. import __version__

    return {"hf_squareloss": __version__, "speechbrain": sb.__version__, "torch": torch.__version__}


def _write_card(folder: Path) -> None:
    """The model card of the finished run; a failure is reported, never fatal (``hf-squareloss card`` redoes it)."""
    try:
        logger.info("model card: %s", write_asr_card(folder))
    except (OSError, ValueError) as err:
        logger.warning(
            "the model card of %s could not be written: %s (retry: hf-squareloss card %s)",
            folder,
            err,
            folder,
        )
