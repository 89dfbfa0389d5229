"""The recipe's image data: Hub data sets with their own column names, local image folders, the validation hold-out.

Every split comes out with the same two columns, ``image`` (a ``datasets.Image``) and ``label`` (a
``datasets.ClassLabel``), whatever the source calls them:

* the Hub data sets of the TCE paper by their short name (:data:`HUB_DATASETS`: ``cifar10``, ``cifar100`` with its
  100 fine labels, ``mnist``, ``svhn`` cropped digits), or any Hub id or ``save_to_disk`` folder, whose image
  column is its one ``Image`` column and whose label column is ``label`` (else its one ``ClassLabel`` column);
  ``--image_column_name`` / ``--label_column_name`` override both;
* local folders (``imagefolder``): ``<dir>/<class name>/<image file>``, one folder per split; every split takes the
  class names of the training folder.

Without a validation split, a seeded, stratified hold-out of the training split becomes the validation split (5,000
images, as in the TCE paper, by default).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "HUB_DATASETS",
    "IMAGE_EXTENSIONS",
    "HubImageDataset",
    "ImageDataError",
    "hold_out_validation",
    "load_image_splits",
    "read_image_folder",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageDataError(ValueError):
    """A data folder or data set that the recipe cannot use; the message names it."""


@dataclass(frozen=True)
class HubImageDataset:
    """A Hub image data set of the papers, with its column names and the TCE paper's augmentation."""

    name: str
    hub_id: str
    config: str | None
    image_column: str
    label_column: str
    augmentation: str
    """``shift_flip`` (4-pixel shift and horizontal mirror) for natural images, ``shift`` for digits."""
    splits: tuple[str, ...] = ("train", "test")


HUB_DATASETS: dict[str, HubImageDataset] = {
    d.name: d
    for d in (
        HubImageDataset("cifar10", "uoft-cs/cifar10", None, "img", "label", "shift_flip"),
        HubImageDataset("cifar100", "uoft-cs/cifar100", None, "img", "fine_label", "shift_flip"),
        HubImageDataset("mnist", "ylecun/mnist", None, "image", "label", "shift"),
        HubImageDataset("svhn", "ufldl-stanford/svhn", "cropped_digits", "image", "label", "shift"),
    )
}


def known_dataset(name: str | None) -> HubImageDataset | None:
    """The :data:`HUB_DATASETS` entry of a short name or Hub id, else None."""
    if not name:
        return None
    for spec in HUB_DATASETS.values():
        if name in (spec.name, spec.hub_id):
            return spec
    return None


# ---- local folders ------------------------------------------------------------------------------------------
def _class_folders(folder: Path, what: str) -> dict[str, list[Path]]:
    if not folder.exists():
        raise ImageDataError(f"{what} {folder}: no such folder")
    if not folder.is_dir():
        raise ImageDataError(f"{what} {folder} is not a folder")
    classes: dict[str, list[Path]] = {}
    loose = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files = sorted(
                p for p in entry.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not files:
                raise ImageDataError(
                    f"{what} {folder}: class folder {entry.name!r} holds no image file ({', '.join(IMAGE_EXTENSIONS)})"
                )
            classes[entry.name] = files
        elif entry.suffix.lower() in IMAGE_EXTENSIONS:
            loose.append(entry.name)
    if loose:
        raise ImageDataError(
            f"{what} {folder} holds image files directly ({loose[0]}...); put each image in a sub-folder named "
            "after its class: <dir>/<class>/<image>"
        )
    if not classes:
        raise ImageDataError(f"{what} {folder} holds no class sub-folders (<dir>/<class>/<image>)")
    return classes


def read_image_folder(
    folder: str | os.PathLike, class_names: list[str] | None = None, what: str = "folder"
) -> Any:
    """A ``datasets.Dataset`` with ``image`` (file paths, decoded on access) and ``label``.

    ``class_names`` (the training folder's) fixes the label ids; a class folder not among them is an error.
    """
    import datasets

    folder = Path(folder).expanduser()
    classes = _class_folders(folder, what)
    names = list(class_names) if class_names is not None else sorted(classes)
    if class_names is None and len(names) < 2:
        raise ImageDataError(f"{what} {folder}: a classifier needs at least 2 class folders, found {names}")
    unknown = sorted(set(classes) - set(names))
    if unknown:
        raise ImageDataError(
            f"{what} {folder} has class folders that the training folder has not: {unknown} (training classes: "
            f"{names})"
        )
    paths, labels = [], []
    for label, name in enumerate(names):
        for path in classes.get(name, []):
            paths.append(str(path))
            labels.append(label)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    return datasets.Dataset.from_dict({"image": paths, "label": labels}, features=features)


# ---- Hub data sets and saved data sets ----------------------------------------------------------------------
def _resolve_columns(
    features: Mapping[str, Any], image_column: str | None, label_column: str | None, origin: str
) -> tuple[str, str]:
    import datasets

    columns = list(features)
    if image_column is None:
        images = [c for c, f in features.items() if isinstance(f, datasets.Image)]
        if len(images) != 1:
            raise ImageDataError(
                f"{origin}: cannot tell the image column among {columns} ({len(images)} Image columns); pass "
                "--image_column_name"
            )
        image_column = images[0]
    if label_column is None:
        if "label" in features:
            label_column = "label"
        else:
            labels = [c for c, f in features.items() if isinstance(f, datasets.ClassLabel)]
            if len(labels) != 1:
                raise ImageDataError(
                    f"{origin}: cannot tell the label column among {columns} ({len(labels)} ClassLabel columns); "
                    "pass --label_column_name"
                )
            label_column = labels[0]
    for kind, column in (("image", image_column), ("label", label_column)):
        if column not in features:
            raise ImageDataError(f"{origin} has no {kind} column {column!r} (columns: {columns})")
    if not isinstance(features[image_column], datasets.Image):
        raise ImageDataError(f"{origin}: column {image_column!r} holds {features[image_column]}, not images")
    if not isinstance(features[label_column], datasets.ClassLabel):
        raise ImageDataError(
            f"{origin}: label column {label_column!r} is {features[label_column]}, not a ClassLabel; the recipe "
            "needs the class names"
        )
    return image_column, label_column


def _standard_columns(dataset: Any, image_column: str, label_column: str) -> Any:
    dataset = dataset.select_columns([image_column, label_column])
    if image_column != "image":
        dataset = dataset.rename_column(image_column, "image")
    if label_column != "label":
        dataset = dataset.rename_column(label_column, "label")
    return dataset


def _load_hub_or_disk(
    name: str,
    config: str | None,
    revision: str | None,
    cache_dir: str | None,
    image_column: str | None,
    label_column: str | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    import datasets

    spec = known_dataset(name)
    local = Path(name).expanduser()
    if spec is None and local.exists():
        try:
            loaded = datasets.load_from_disk(str(local))
        except FileNotFoundError as err:
            raise ImageDataError(
                f"--dataset_name {name}: a local folder, but not one written by datasets' save_to_disk ({err}); "
                "for folders of images use --train_dir/--validation_dir/--test_dir"
            ) from None
        source = {"origin": "disk", "path": str(local.resolve())}
    else:
        hub_id = spec.hub_id if spec else name
        config = config if config is not None else (spec.config if spec else None)
        try:
            loaded = datasets.load_dataset(hub_id, config, revision=revision, cache_dir=cache_dir)
        except Exception as err:  # offline, unknown id, no access: say which data set and why
            raise ImageDataError(
                f"could not load the Hub dataset {hub_id!r}{f' ({config})' if config else ''}: {err}. Offline, "
                "use local folders (--dataset_name imagefolder --train_dir DIR) or a save_to_disk folder."
            ) from err
        source = {"origin": "hub", "dataset": hub_id, "config": config, "revision": revision}
        if spec is not None:
            image_column = image_column or spec.image_column
            label_column = label_column or spec.label_column
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    splits: dict[str, Any] = {}
    for split, dataset in loaded.items():
        columns = _resolve_columns(dataset.features, image_column, label_column, f"{name} ({split})")
        splits[split] = _standard_columns(dataset, *columns)
    source["columns"] = {"image": columns[0], "label": columns[1]}
    return splits, source


def hold_out_validation(train: Any, size: float, seed: int) -> tuple[Any, Any]:
    """``(train, validation)``: a seeded, stratified hold-out of ``size`` images (``size < 1``: that fraction)."""
    n = len(train)
    count = round(size * n) if size < 1 else int(size)
    if not 1 <= count < n:
        raise ImageDataError(
            f"--validation_size {size:g} leaves no training or no validation images out of {n} training images; "
            "pass a smaller --validation_size or a --validation_dir"
        )
    num_classes = train.features["label"].num_classes
    stratify = "label" if min(count, n - count) >= num_classes else None
    parts = train.train_test_split(test_size=count, seed=seed, stratify_by_column=stratify)
    return parts["train"], parts["test"]


def _check_labels(splits: Mapping[str, Any], origin: str) -> list[str]:
    names = splits["train"].features["label"].names
    for split, dataset in splits.items():
        other = dataset.features["label"].names
        if other != names:
            raise ImageDataError(
                f"{origin}: the {split} split has other class names than train ({other[:5]}... vs {names[:5]}...)"
            )
    return list(names)


def load_image_splits(data_args: Any, cache_dir: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load ``train``, ``validation`` (given or held out) and ``test`` (when there is one).

    Returns ``(splits, source)``: the datasets with ``image``/``label`` columns, and where they came from (for
    ``dataset.json``).
    """
    if data_args.dataset_name == "imagefolder":
        splits: dict[str, Any] = {}
        train = read_image_folder(data_args.train_dir, what="--train_dir")
        names = train.features["label"].names
        splits["train"] = train
        for split, folder in (("validation", data_args.validation_dir), ("test", data_args.test_dir)):
            if folder:
                splits[split] = read_image_folder(folder, names, what=f"--{split}_dir")
        source: dict[str, Any] = {
            "origin": "imagefolder",
            **{
                f"{s}_dir": str(Path(d).expanduser().resolve())
                for s, d in (
                    ("train", data_args.train_dir),
                    ("validation", data_args.validation_dir),
                    ("test", data_args.test_dir),
                )
                if d
            },
        }
    else:
        loaded, source = _load_hub_or_disk(
            data_args.dataset_name,
            data_args.dataset_config_name,
            data_args.dataset_revision,
            cache_dir,
            data_args.image_column_name,
            data_args.label_column_name,
        )
        if "train" not in loaded:
            raise ImageDataError(f"{data_args.dataset_name} has no train split (splits: {list(loaded)})")
        splits = {"train": loaded["train"]}
        for split in ("validation", "test"):
            if split in loaded:
                splits[split] = loaded[split]
    _check_labels(splits, data_args.dataset_name)
    if "validation" not in splits:
        splits["train"], splits["validation"] = hold_out_validation(
            splits["train"], data_args.validation_size, data_args.validation_split_seed
        )
        source["validation"] = {
            "held_out_from": "train",
            "size": len(splits["validation"]),
            "seed": data_args.validation_split_seed,
        }
    return splits, source
