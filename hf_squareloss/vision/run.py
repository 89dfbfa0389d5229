"""Train an image classifier with the loss of your choice: the recipe behind
``recipes/vision/run_image_classification.py``.

Follows the conventions of the ``transformers`` image-classification example (``HfArgumentParser`` over model, data
and training arguments; ``all_results.json`` and the model in ``--output_dir``) and shares the GLUE recipe's label
noise, protocols and run folder (:mod:`hf_squareloss.glue.outputs`): ``run_args.json``, ``dataset.json``,
``label_noise.json``, ``*_results.json``, ``run_summary.json`` (written last). ``--do_eval`` scores the validation
split (``eval_*``), ``--do_predict`` the test split (``test_*``) with the model the protocol kept. An interrupted run
resumes from its last checkpoint; a finished run is never overwritten. Run ``python -m hf_squareloss.vision.run -h``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..glue.arguments import LabelNoiseArguments
from ..glue.callbacks import PROGRESS_PREFIX, EpochProgressCallback
from ..glue.outputs import (
    DATASET_FILE,
    LABEL_NOISE_FILE,
    RUN_ARGS_FILE,
    SUMMARY_FILE,
    eval_history,
    last_complete_checkpoint,
    write_json,
)
from ..glue.records import check_resumable, run_args_record, run_summary
from ..recipe_run import configure_logging, run_once
from ..training_args import SquareLossTrainingArguments
from .arguments import ImageDataArguments, ImageModelArguments, ImageProtocolArguments

__all__ = ["ARGUMENT_CLASSES", "ImageTask", "explicit_flags", "main", "parse_args", "run"]

logger = logging.getLogger(__name__)

ARGUMENT_CLASSES = (
    ImageModelArguments,
    ImageDataArguments,
    LabelNoiseArguments,
    ImageProtocolArguments,
    SquareLossTrainingArguments,
)

RESUME_KEYS: dict[str, tuple[str, ...]] = {
    "model": ("model_name_or_path", "model_type", "num_channels", "config_name", "model_revision"),
    "data": (
        "task_name",
        "dataset_name",
        "dataset_config_name",
        "train_dir",
        "validation_dir",
        "validation_size",
        "validation_split_seed",
        "max_train_samples",
        "image_size",
        "augmentation",
        "shift_pixels",
        "image_mean",
        "image_std",
    ),
    "label_noise": ("label_noise", "label_noise_type", "label_noise_exact", "noise_seed"),
    "protocol": (
        "protocol",
        "early_stopping_patience",
        "reference_run",
        "reference_epochs",
        "lr_milestones",
        "lr_decay",
    ),
    # plus the loss: "loss_type" and every loss field of the registry (added by check_resumable)
    "training": (
        "label_smoothing_factor",
        "seed",
        "data_seed",
        "learning_rate",
        "num_train_epochs",
        "max_steps",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "lr_scheduler_type",
        "warmup_steps",
        "weight_decay",
        "max_grad_norm",
        "optim",
        "optim_args",
        "bf16",
        "fp16",
    ),
}


@dataclass(frozen=True)
class ImageTask:
    """What the shared run records and the comparison need to know about an image task."""

    name: str
    label_names: tuple[str, ...]
    main_metric: str = "accuracy"
    metrics: tuple[str, ...] = ("accuracy",)
    is_regression: bool = False

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def parse_args(argv: Sequence[str] | None = None) -> tuple[Any, ...]:
    """Parse the command line (or a single ``.json`` file of arguments, as in the ``transformers`` examples)."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(ARGUMENT_CLASSES)
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)


def explicit_flags(argv: Sequence[str] | None) -> set[str]:
    """The argument names given on the command line (or the keys of its ``.json`` file): a protocol keeps them."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith(".json"):
        with open(argv[0], encoding="utf-8") as fh:
            return set(json.load(fh))
    names = set()
    for arg in argv:
        if arg.startswith("--"):
            names.add(arg[2:].split("=", 1)[0].replace("-", "_"))
    return names


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the recipe with ``argv`` (default: ``sys.argv[1:]``); return the run's summary."""
    parsed = parse_args(argv)
    return run(*parsed, argv=argv)


def _accuracy(prediction: Any) -> dict[str, float]:
    logits = (
        prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    )
    labels = np.asarray(prediction.label_ids)
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def run(
    model_args: ImageModelArguments,
    data_args: ImageDataArguments,
    noise_args: LabelNoiseArguments,
    protocol_args: ImageProtocolArguments,
    training_args: SquareLossTrainingArguments,
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The recipe on parsed arguments (see the module docstring)."""
    from .protocol import configure_image_protocol

    configure_logging(training_args, logger)

    if not (training_args.do_train or training_args.do_eval or training_args.do_predict):
        raise ValueError("nothing to do: pass --do_train, --do_eval and/or --do_predict")
    if not training_args.do_train and model_args.model_type is not None:
        raise ValueError(
            "--model_type builds an untrained model; evaluate a trained one with --model_name_or_path"
        )
    task_stub = ImageTask(data_args.task_name or "vision:images", ())
    setup = configure_image_protocol(
        protocol_args, training_args, task_stub, data_args, noise_args, explicit_flags(argv)
    )
    training_args = setup.training_args
    training_args.remove_unused_columns = (
        False  # the images are transformed on the fly from the "image" column
    )
    from .card import write_image_run_card

    return run_once(
        training_args,
        lambda: _run_locked(model_args, data_args, noise_args, protocol_args, training_args, setup, argv),
        write_image_run_card,
    )


PIPELINE_PROCESSOR_NOTE = (
    "none saved: pipelines feed RGB images, and this model takes 1 channel; train with --num_channels 3 (grey "
    "images repeated to 3 channels) for a model that pipeline('image-classification') can serve"
)


def save_image_processor(
    output_dir: Path, mean: Sequence[float], std: Sequence[float], size: tuple[int, int] | None
) -> None:
    """Save, beside the model, the image processor that repeats the evaluation transform of this run.

    RGB, resized to ``size`` (bilinear), scaled to [0, 1], normalised with ``mean`` / ``std``: what
    :class:`hf_squareloss.vision.transforms.ImageTransform` does without augmentation, so that
    ``pipeline("image-classification", model=output_dir)`` serves the model as it was evaluated.
    """
    from PIL import Image
    from transformers import ViTImageProcessor

    processor = ViTImageProcessor(
        do_resize=size is not None,
        size={"height": size[0], "width": size[1]} if size else None,
        resample=Image.BILINEAR,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[float(v) for v in mean],
        image_std=[float(v) for v in std],
    )
    processor.save_pretrained(output_dir)


def _image_processor_settings(model_args: ImageModelArguments) -> dict[str, Any]:
    """Size, mean and std of a pretrained model's image processor ({} when it has none)."""
    if model_args.model_name_or_path is None:
        return {}
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(
            model_args.model_name_or_path, cache_dir=model_args.cache_dir, revision=model_args.model_revision
        )
    except (OSError, ValueError) as err:
        logger.info("no image processor for %s (%s)", model_args.model_name_or_path, err)
        return {}
    out: dict[str, Any] = {}
    size = getattr(processor, "size", None) or {}
    if isinstance(size, dict):
        size = dict(size)
    else:
        size = {k: getattr(size, k, None) for k in ("height", "width", "shortest_edge")}
    if size.get("height") and size.get("width"):
        out["size"] = (int(size["height"]), int(size["width"]))
    elif size.get("shortest_edge"):
        out["size"] = (int(size["shortest_edge"]),) * 2
    if (
        getattr(processor, "image_mean", None) is not None
        and getattr(processor, "image_std", None) is not None
    ):
        out["mean"] = [float(v) for v in processor.image_mean]
        out["std"] = [float(v) for v in processor.image_std]
    return out


def _grey(image: Any) -> bool:
    return getattr(image, "mode", "RGB") in ("1", "L", "LA", "I", "I;16", "F")


def _run_locked(
    model_args: ImageModelArguments,
    data_args: ImageDataArguments,
    noise_args: LabelNoiseArguments,
    protocol_args: ImageProtocolArguments,
    training_args: SquareLossTrainingArguments,
    setup: Any,
    argv: Sequence[str] | None,
) -> dict[str, Any]:
    from transformers import AutoConfig, AutoModelForImageClassification, default_data_collator, set_seed

    from ..noise import add_label_noise
    from .data import load_image_splits
    from .resnet import CifarResNetConfig, CifarResNetForImageClassification
    from .trainer import ImageTrainer
    from .transforms import ImageTransform, channel_statistics

    started = time.perf_counter()
    output_dir = Path(training_args.output_dir)
    main_process = training_args.process_index == 0
    run_args = run_args_record(
        argv, model_args, data_args, noise_args, protocol_args, training_args, setup.record
    )
    last_checkpoint = None
    if output_dir.is_dir():
        check_resumable(output_dir, run_args, RESUME_KEYS)
        if training_args.do_train and training_args.resume_from_checkpoint is None:
            found = last_complete_checkpoint(output_dir, remove_incomplete=main_process)
            last_checkpoint = str(found) if found is not None else None
    if last_checkpoint is not None and main_process:
        print(f"{PROGRESS_PREFIX} resuming the interrupted run from {last_checkpoint}", flush=True)
    if main_process:
        write_json(output_dir / RUN_ARGS_FILE, run_args)
    set_seed(training_args.seed)

    # ---- data ---------------------------------------------------------------------------------------------
    with training_args.main_process_first(desc="loading the images"):
        splits, source = load_image_splits(data_args, cache_dir=model_args.cache_dir)
    if training_args.do_predict and "test" not in splits:
        raise ValueError(
            f"--do_predict needs a test split: {data_args.dataset_name} has none"
            + (" (pass --test_dir)" if data_args.dataset_name == "imagefolder" else "")
        )
    label_names = list(splits["train"].features["label"].names)
    task = ImageTask(str(data_args.task_name), tuple(label_names))
    for split, limit in (
        ("train", data_args.max_train_samples),
        ("validation", data_args.max_eval_samples),
        ("test", data_args.max_predict_samples),
    ):
        if limit is not None and split in splits:
            splits[split] = splits[split].select(range(min(limit, len(splits[split]))))
    noise_record: dict[str, Any] | None = None
    if training_args.do_train and noise_args.active:
        splits["train"], report = add_label_noise(
            splits["train"],
            noise_args.label_noise,
            noise_type=noise_args.label_noise_type,
            seed=noise_args.noise_seed,
            exact=noise_args.label_noise_exact,
            num_classes=task.num_labels,
        )
        noise_record = {
            **report.to_dict(),
            "split": "train",
            "indices_of": "the training split after the validation hold-out and --max_train_samples",
            "settings": {k: getattr(noise_args, k) for k in noise_args.__dataclass_fields__},
        }
        print(
            f"{PROGRESS_PREFIX} label noise {report.noise_type} {report.rate:g}: {report.num_replaced} training "
            f"labels redrawn, {report.num_flipped} changed (realised rate {report.realised_rate:.4f}, expected "
            f"{report.expected_flip_rate:.4f})",
            flush=True,
        )

    # ---- model --------------------------------------------------------------------------------------------
    labels = {
        "num_labels": task.num_labels,
        "id2label": dict(enumerate(label_names)),
        "label2id": {n: i for i, n in enumerate(label_names)},
    }
    processor = _image_processor_settings(model_args)
    first_image = splits["train"][0]["image"]
    if model_args.model_type is not None:
        channels = model_args.num_channels or (1 if _grey(first_image) else 3)
        config = CifarResNetConfig.from_name(model_args.model_type, num_channels=channels, **labels)
        model = CifarResNetForImageClassification(config)
    else:
        hub = {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision}
        config = AutoConfig.from_pretrained(
            model_args.config_name or model_args.model_name_or_path, **labels, **hub
        )
        model = AutoModelForImageClassification.from_pretrained(
            model_args.model_name_or_path,
            config=config,
            ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
            **hub,
        )
        channels = int(getattr(config, "num_channels", 3))

    # ---- preprocessing ----------------------------------------------------------------------------------------
    if data_args.image_size is not None:
        size: tuple[int, int] | None = (data_args.image_size, data_args.image_size)
    else:
        size = processor.get("size") or (first_image.height, first_image.width)
    if data_args.image_mean is not None:
        mean, std, normalisation = list(data_args.image_mean), list(data_args.image_std or []), "command line"
    elif "mean" in processor and len(processor["mean"]) == channels:
        mean, std, normalisation = processor["mean"], processor["std"], "image processor"
    else:
        mean, std = channel_statistics(splits["train"]["image"], channels, size)
        normalisation = "training split"
    augmentation = data_args.augmentation or (
        data_args.default_augmentation() if protocol_args.protocol == "tce_paper" else "none"
    )
    common = {"channels": channels, "mean": mean, "std": std, "size": size}
    splits["train"].set_transform(
        ImageTransform(
            **common,
            shift=data_args.shift_pixels if augmentation != "none" else 0,
            flip=augmentation == "shift_flip",
            train=True,
        )
    )
    for split in ("validation", "test"):
        if split in splits:
            splits[split].set_transform(ImageTransform(**common))
    image_record = {
        "channels": channels,
        "size": list(size) if size else None,
        "mean": mean,
        "std": std,
        "normalisation_from": normalisation,
        "augmentation": augmentation,
        "shift_pixels": data_args.shift_pixels if augmentation != "none" else 0,
        "image_processor": PIPELINE_PROCESSOR_NOTE if channels == 1 else "saved with the model",
    }
    dataset_record = {
        "task": task.name,
        **source,
        "splits_used": {split: len(ds) for split, ds in splits.items()},
        "eval_split": "validation",
        "eval_splits": ["validation"],
        "label_names": label_names,
        "label_counts": {
            split: {
                label_names[i]: int(c)
                for i, c in enumerate(
                    np.bincount(np.asarray(ds.with_format(None)["label"]), minlength=len(label_names))
                )
            }
            for split, ds in splits.items()
        },
        "label_noise": noise_record is not None,
        "images": image_record,
    }
    if main_process:
        write_json(output_dir / DATASET_FILE, dataset_record)
        if channels == 3:
            save_image_processor(output_dir, mean, std, size)
        else:
            logger.info("no image processor saved: %s", PIPELINE_PROCESSOR_NOTE)
        if noise_record is not None:
            write_json(output_dir / LABEL_NOISE_FILE, noise_record)

    # ---- train --------------------------------------------------------------------------------------------
    metric = setup.record.get("metric_for_best_model") or task.main_metric
    progress = EpochProgressCallback(metric, bool(setup.record.get("greater_is_better", True)))
    schedule = setup.record.get("lr_schedule") or {}
    trainer = ImageTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"] if training_args.do_train else None,
        eval_dataset=splits["validation"],
        data_collator=default_data_collator,
        compute_metrics=_accuracy,
        callbacks=[*setup.callbacks, progress],
        lr_milestones=schedule.get("milestones"),
        lr_decay=schedule.get("decay", 0.1),
    )
    if main_process:
        test_count = f" / {len(splits['test'])} test" if "test" in splits else ""
        print(
            f"{PROGRESS_PREFIX} {task.name} | {model_args.name} | {trainer.loss_function.config.describe()} | "
            f"protocol {setup.record['name']} | label noise {noise_args.label_noise:g} | seed "
            f"{training_args.seed} | {len(splits['train'])} train / {len(splits['validation'])} validation"
            f"{test_count} images of {size} | {output_dir}",
            flush=True,
        )
    history: list[dict[str, Any]] = []
    train_metrics: dict[str, Any] = {}
    if training_args.do_train:
        train_result = trainer.train(
            resume_from_checkpoint=training_args.resume_from_checkpoint or last_checkpoint
        )
        trainer.save_model()
        train_metrics = dict(train_result.metrics)
        train_metrics["train_samples"] = len(splits["train"])
        trainer.log_metrics("train", train_metrics)
        trainer.save_metrics("train", train_metrics)
        trainer.save_state()
        history = eval_history(trainer.state.log_history)
    for callback in (*setup.callbacks, progress):  # the final evaluations are not part of training
        trainer.remove_callback(callback)

    # ---- evaluate (validation) and predict (test) with the kept model -----------------------------------------
    eval_metrics: dict[str, Any] = {}
    if training_args.do_eval:
        eval_metrics = trainer.evaluate(eval_dataset=splits["validation"])
        eval_metrics["eval_samples"] = len(splits["validation"])
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
    test_metrics: dict[str, Any] = {}
    if training_args.do_predict:
        test_metrics = trainer.evaluate(eval_dataset=splits["test"], metric_key_prefix="test")
        test_metrics["test_samples"] = len(splits["test"])
        trainer.log_metrics("test", test_metrics)
        trainer.save_metrics("test", test_metrics)

    summary = run_summary(
        task,
        trainer,
        training_args,
        setup.record,
        noise_record,
        dataset_record,
        history,
        train_metrics,
        eval_metrics,
        model_args,
        data_args,
        started,
    )
    summary["model_name_or_path"] = model_args.name
    summary["test_metrics"] = {
        k: v for k, v in test_metrics.items() if not k.endswith(("_runtime", "_per_second"))
    }
    summary["images"] = image_record
    summary["wall_seconds"] = time.perf_counter() - started
    if main_process:
        write_json(output_dir / SUMMARY_FILE, summary)
        if not protocol_args.keep_checkpoints:
            for folder in output_dir.glob("checkpoint-*"):
                shutil.rmtree(folder, ignore_errors=True)
        done = " ".join(
            f"{k}={v:.4f}" for k, v in {**eval_metrics, **test_metrics}.items() if k.endswith("_accuracy")
        )
        print(
            f"{PROGRESS_PREFIX} done: {done} (model of epoch {summary['model_epoch']}) in "
            f"{summary['wall_seconds']:.0f}s",
            flush=True,
        )
    return summary


if __name__ == "__main__":
    sys.exit(1 if "push_error" in main() else 0)
