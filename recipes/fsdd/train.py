#!/usr/bin/env python3
"""Free Spoken Digits: speaker or digit identification with any loss of hf_squareloss (``loss_type`` in the YAML).

The recipe has the shape of SpeechBrain's ``templates/speaker_id`` (features, x-vector, classifier, a ``Brain``
whose ``compute_objectives`` computes the cost); ``README.md`` shows the changes that make such a recipe train with
the square loss or the Tamed CE, and why they are needed.

    python train.py hparams/train.yaml                       # the loss of the YAML (square)
    python train.py hparams/train.yaml --loss_type tce --task digit
    torchrun --nproc_per_node 2 train.py hparams/train.yaml  # DDP (gloo on CPU)

Results go to ``<output_folder>/results.json``: the loss with its resolved parameters, and the final training loss,
validation and test error rates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import if_main_process, run_on_main

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fsdd_prepare import classes, prepare_fsdd

from hf_squareloss.shared_data import shared_dir
from hf_squareloss.speechbrain.audio import read_mono


class IdentificationBrain(sb.Brain):
    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, lens = batch.sig
        feats = self.modules.compute_features(wavs)
        feats = self.modules.mean_var_norm(feats, lens)
        embeddings = self.modules.embedding_model(feats, lens)
        return self.modules.classifier(embeddings)  # raw logits [B, 1, C]: the log-softmax layer was removed

    def compute_objectives(self, logits, batch, stage):
        _, lens = batch.sig
        targets, _ = batch.label_encoded
        # SpeechBrain's template: loss = sb.nnet.losses.nll_loss(predictions, spkid, lens)
        loss = self.hparams.compute_cost(logits, targets, lens)
        self.loss_metric.append(batch.id, logits, targets, lens, reduction="batch")
        if stage != sb.Stage.TRAIN:
            self.error_metrics.append(
                batch.id, logits, targets, lens
            )  # argmax: the same for scores and logits
        return loss

    def on_stage_start(self, stage, epoch=None):
        self.loss_metric = sb.utils.metric_stats.MetricStats(metric=self.hparams.compute_cost)
        if stage != sb.Stage.TRAIN:
            self.error_metrics = self.hparams.error_stats()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        stats = {"loss": stage_loss, "error_rate": float(self.error_metrics.summarize("average"))}
        if stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats(
                {"epoch": epoch}, train_stats={"loss": self.train_loss}, valid_stats=stats
            )
            self.checkpointer.save_and_keep_only(meta=stats, min_keys=["error_rate"])
            self.valid_stats = stats
        else:
            self.test_stats = stats


def remove_log_softmax(classifier: torch.nn.Module) -> torch.nn.Module:
    """Drop the final log-softmax of a SpeechBrain classifier (``speechbrain.lobes.models.Xvector.Classifier``
    and the templates' ``Classifier`` end in a layer named ``softmax``), so that it outputs raw logits."""
    if "softmax" in classifier:
        del classifier["softmax"]
    return classifier


def datasets(manifests, hparams, labels):
    sample_rate = int(hparams["sample_rate"])
    task = hparams["task"]

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return read_mono(wav, sample_rate)

    @sb.utils.data_pipeline.takes(task)
    @sb.utils.data_pipeline.provides("label_encoded")
    def label_pipeline(label):
        return torch.LongTensor([labels.index(label)])

    out = {}
    for split, path in manifests.items():
        out[split] = sb.dataio.dataset.DynamicItemDataset.from_json(
            json_path=str(path), dynamic_items=[audio_pipeline, label_pipeline]
        )
        out[split].set_output_keys(["id", "sig", "label_encoded"])
    return out


def main(argv: list[str]) -> dict:
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with open(hparams_file, encoding="utf-8") as fh:
        text = fh.read()
    # a first read for the folders and the task; the number of classes comes from the prepared manifests
    first = load_hyperpyyaml(text, overrides)
    sb.create_experiment_directory(
        experiment_directory=first["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
        save_env_desc=False,  # it runs `pip freeze`: seconds, longer than a quick run of this recipe
    )
    data_folder = first["data_folder"] or shared_dir("data") / "fsdd"
    manifest_folder = Path(first["output_folder"]) / "manifests"
    run_on_main(
        prepare_fsdd,
        args=[data_folder, manifest_folder],
        kwargs={key: first[key] for key in ("train_takes", "valid_takes", "test_takes")},
    )
    manifests = {split: manifest_folder / f"{split}.json" for split in ("train", "valid", "test")}
    labels = classes(manifests["train"], first["task"])
    hparams = load_hyperpyyaml(text, {**_as_dict(overrides), "n_classes": len(labels)})
    hparams["train_logger"] = sb.utils.train_logger.FileTrainLogger(save_file=hparams["train_log"])
    remove_log_softmax(hparams["classifier"])

    data = datasets(manifests, hparams, labels)
    brain = IdentificationBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        brain.hparams.epoch_counter,
        data["train"],
        data["valid"],
        train_loader_kwargs=hparams["dataloader_options"],
        valid_loader_kwargs={**hparams["dataloader_options"], "shuffle": False},
    )
    brain.evaluate(
        data["test"],
        min_key="error_rate",
        test_loader_kwargs={**hparams["dataloader_options"], "shuffle": False},
    )
    results = {
        "task": hparams["task"],
        "classes": labels,
        "loss": hparams["compute_cost"].config.to_dict(),
        # None when a finished run is started again: it resumes after its last epoch and only evaluates
        "train_loss": getattr(brain, "train_loss", None),
        "valid_error_rate": getattr(brain, "valid_stats", {}).get("error_rate"),
        "test_error_rate": brain.test_stats["error_rate"],
        "test_loss": float(brain.test_stats["loss"]),
    }
    if if_main_process():
        with open(Path(hparams["output_folder"]) / "results.json", "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1)
    return results


def _as_dict(overrides) -> dict:
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    import yaml

    return dict(yaml.safe_load(overrides) or {})


if __name__ == "__main__":
    main(sys.argv[1:])
