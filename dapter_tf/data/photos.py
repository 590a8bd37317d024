"""The ``photos`` task: a provider's own labelled photos, as a folder per class or a CSV of files and labels.

Two layouts (``list_photos``):

* a folder per class (``--source=folder``): ``<root>/<class>/*.{jpg,jpeg,png,bmp}``; the target
  label is called ``label`` and its classes are the sorted folder names.
* a CSV (``--source=csv``, ``--labels_csv``): a header row, a file column (``--file_column``, paths
  relative to the CSV's folder), the target's label column (``--label_column``), optional attack
  label columns (``--attack_columns``, what the labelling attackers try to read off converted
  photos) and an optional ``split`` column (``train`` or ``test``). Each label's classes are its
  sorted distinct values (numerically when every value is an integer), their names kept.

Labels, class counts and class names come from the files (``photo_task``), as LFW's identities do.
Photos of any size are brought to the task's size by ``resize.RESIZE_POLICY`` (``fit_image``), the
policy ``dapter-convert`` and the Android harness apply too. Without a ``split`` column the test
split is the shared folders' fixed one (``folders.fixed_split``): the same for every ``--seed``.

Everything that can be checked without decoding (columns, missing files, classes, empty splits) is
checked when the task is made, so a bad set is one line before any image is read or file written.
"""

import csv
import dataclasses
import os

import numpy as np
from PIL import Image

from dapter_tf.data.folders import IMAGE_EXTENSIONS, TEST_FRACTION, fixed_split
from dapter_tf.data.images import ImageSet
from dapter_tf.data.tasks import Task
from dapter_tf.errors import DapterError
from dapter_tf.resize import fit_image

FOLDER_LABEL = "label"
SPLIT_COLUMN = "split"
SPLITS = ("train", "test")
# How many missing files an error names before it gives only their count.
NAMED_MISSING = 3


@dataclasses.dataclass(frozen=True)
class PhotoListing:
    """A photo set's files and labels, listed but not decoded.

    Attributes:
        where: The folder or CSV file, named in messages.
        layout: ``"folder per class"`` or ``"CSV"``.
        paths: Every photo's path, in listing order.
        names: Every photo's name as the listing gives it (relative to the folder or the CSV's folder).
        labels: Label name -> int64 class index per photo; the target's label first.
        class_names: Label name -> its classes' names, in index order.
        splits: ``"train"`` / ``"test"`` per photo from the CSV's split column, or ``None`` (the fixed split).
    """

    where: str
    layout: str
    paths: list
    names: list
    labels: dict
    class_names: dict
    splits: np.ndarray | None = None

    def split(self, split: str):
        """(paths, names, labels) of ``split``, in listing order."""
        if self.splits is None:
            keep, _ = fixed_split(list(range(len(self.paths))), {}, split)
            keep = np.array(keep, np.int64)
        else:
            keep = np.flatnonzero(self.splits == split)
        labels = {k: v[keep] for k, v in self.labels.items()}
        return [self.paths[i] for i in keep], [self.names[i] for i in keep], labels


def list_photos(
    source: str,
    data_dir: str | None = None,
    labels_csv: str | None = None,
    label_column: str = "label",
    file_column: str = "file",
    attack_columns: tuple = (),
) -> PhotoListing:
    """Lists a photo set and checks everything that needs no decoding.

    Args:
        source: ``"folder"`` (``data_dir`` holds a folder per class) or ``"csv"`` (``labels_csv``).
        data_dir: The root of a folder per class.
        labels_csv: The CSV file.
        label_column: The CSV's column of the target's label.
        file_column: The CSV's column of file paths, relative to the CSV's folder.
        attack_columns: The CSV's columns of attack labels.

    Raises:
        DapterError: one line naming the folder or file: a missing folder, file or column, files
            the CSV names that are missing, a label with fewer than two classes, a split with no photo.
    """
    if source == "folder":
        listing = _list_folder(data_dir)
    elif source == "csv":
        listing = _list_csv(labels_csv, label_column, file_column, tuple(attack_columns))
    else:
        raise DapterError(f"the photos task reads --source=folder or --source=csv, not {source!r}")
    for label, names in listing.class_names.items():
        if len(names) < 2:
            which = "class folder" if listing.layout == "folder per class" else f"value of column {label!r}"
            raise DapterError(
                f"{listing.where}: label {label!r} has one class ({names[0]!r}, the only {which}); "
                "a task needs at least two classes"
            )
    for split in SPLITS:
        if not len(listing.split(split)[0]):
            how = (
                f"its {SPLIT_COLUMN!r} column names no {split!r} row"
                if listing.splits is not None
                else f"{len(listing.paths)} photo(s) are too few for the fixed test split ({TEST_FRACTION:.0%} of them)"
            )
            raise DapterError(f"{listing.where}: the {split} split is empty: {how}")
    return listing


def photo_task(task: Task, listing: PhotoListing) -> Task:
    """The registered ``photos`` task with the listing's labels, class counts and names filled in."""
    target, *attacks = listing.labels
    return dataclasses.replace(
        task,
        description=f"photos of {listing.where} ({listing.layout}): target {target!r}, "
        f"{len(listing.class_names[target])} classes",
        target_label=target,
        attack_labels=tuple(attacks),
        label_classes={k: len(v) for k, v in listing.class_names.items()},
        class_names=tuple(listing.class_names[target]),
    )


def read_photos(task: Task, listing: PhotoListing, split: str, max_images: int = 0, seed: int = 0) -> ImageSet:
    """Decodes one split of a photo set, each photo fitted to the task's size by ``fit_image``.

    Photos are decoded and fitted one at a time, so memory holds the small fitted images, never
    the whole set at full size. ``max_images`` is applied after a shuffle seeded by ``seed``.

    Raises:
        DapterError: naming the file, on one that is no readable image.
    """
    paths, names, labels = listing.split(split)
    order = np.random.default_rng(seed).permutation(len(paths))
    if max_images:
        order = order[:max_images]
    height, width = task.image_size
    images = np.empty((len(order), height, width, 3), np.uint8)
    for row, i in enumerate(order):
        images[row] = fit_image(_decode(paths[i]), height, width)
    return ImageSet(
        images,
        {k: v[order] for k, v in labels.items()},
        f"{listing.where} ({listing.layout}, {split})",
        np.array([names[i] for i in order]),
    )


def _decode(path: str) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DapterError(f"{path}: not a readable image ({e})") from None
    return image


def _class_indices(values: list) -> tuple[np.ndarray, tuple]:
    """Each value's class index and the classes' names: sorted, numerically when all are integers."""
    try:
        numbers = [int(v) for v in values]
    except ValueError:
        classes = sorted(set(values))
        index = {c: i for i, c in enumerate(classes)}
        return np.array([index[v] for v in values], np.int64), tuple(classes)
    classes = sorted(set(numbers))
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[n] for n in numbers], np.int64), tuple(str(c) for c in classes)


def _list_folder(root: str | None) -> PhotoListing:
    if not root:
        raise DapterError("--dataset=photos --source=folder needs the photos' folder (--data_dir), a folder per class")
    if not os.path.isdir(root):
        raise DapterError(f"photo folder not found: {root}")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    paths, names, labels = [], [], []
    for index, name in enumerate(classes):
        files = sorted(f for f in os.listdir(os.path.join(root, name)) if f.lower().endswith(IMAGE_EXTENSIONS))
        paths += [os.path.join(root, name, f) for f in files]
        names += [f"{name}/{f}" for f in files]
        labels += [index] * len(files)
    used = sorted({classes[i] for i in labels})
    if not used:
        raise DapterError(
            f"{root}: no photos ({', '.join(IMAGE_EXTENSIONS)}) in a class folder; expected {root}/<class>/<photo>"
        )
    # A class folder without photos would be a class the target can never be trained on.
    empty = [c for c in classes if c not in used]
    if empty:
        raise DapterError(f"{root}: class folder(s) {', '.join(empty)} hold no photo ({', '.join(IMAGE_EXTENSIONS)})")
    labels = {FOLDER_LABEL: np.array(labels, np.int64)}
    return PhotoListing(root, "folder per class", paths, names, labels, {FOLDER_LABEL: tuple(classes)})


def _list_csv(path: str | None, label_column: str, file_column: str, attack_columns: tuple) -> PhotoListing:
    if not path:
        raise DapterError("--dataset=photos --source=csv needs the labels file (--labels_csv)")
    if not os.path.isfile(path):
        raise DapterError(f"labels file not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DapterError(f"{path}: cannot be read as a CSV file ({e})") from None
    if label_column in attack_columns:
        raise DapterError(f"--attack_columns names {label_column!r}, the target's --label_column; drop it")
    flags = {file_column: "--file_column", label_column: "--label_column"}
    for column in (file_column, label_column, *attack_columns):
        if column not in columns:
            raise DapterError(
                f"{path}: no column {column!r} ({flags.get(column, '--attack_columns')}); "
                f"its columns are: {', '.join(columns) or 'none (the file is empty)'}"
            )
    if not rows:
        raise DapterError(f"{path}: no rows below its header")
    for column in (file_column, label_column, *attack_columns):
        blank = [n for n, row in enumerate(rows, start=2) if not (row[column] or "").strip()]
        if blank:
            raise DapterError(
                f"{path}: {len(blank)} row(s) have no {column!r} (the first on line {blank[0]}); "
                "fill them in or remove them"
            )
    folder = os.path.dirname(os.path.abspath(path))
    names = [row[file_column].strip() for row in rows]
    paths = [os.path.join(folder, n) for n in names]
    missing = [n for n, p in zip(names, paths) if not os.path.isfile(p)]
    if missing:
        raise DapterError(
            f"{path}: {len(missing)} of {len(rows)} file(s) it names are missing, e.g. "
            f"{', '.join(missing[:NAMED_MISSING])} (paths are relative to {folder})"
        )
    labels, class_names = {}, {}
    for column in (label_column, *attack_columns):
        labels[column], class_names[column] = _class_indices([row[column].strip() for row in rows])
    splits = None
    if SPLIT_COLUMN in columns:
        splits = np.array([(row[SPLIT_COLUMN] or "").strip() for row in rows])
        wrong = sorted(set(splits) - set(SPLITS))
        if wrong:
            raise DapterError(
                f"{path}: the {SPLIT_COLUMN!r} column holds {', '.join(repr(w) for w in wrong)}; "
                f"its values must be 'train' or 'test'"
            )
    return PhotoListing(path, "CSV", paths, names, labels, class_names, splits)
