"""Readers for datasets kept as folders of image files: CelebA, LFW and ImageNet-style trees.

Each reader recognises a layout from the files it finds, lists image paths with their labels, and
only then decodes the images it keeps (``max_images`` is applied first, so a small run never decodes
a whole dataset). The layouts:

* CelebA, official: ``img_align_celeba/`` + ``list_attr_celeba.txt`` (values -1/1), and
  ``list_eval_partition.txt`` (0 train, 1 validation, 2 test) when present.
* CelebA, as in ``../shared/data/celeba/``: ``images/`` + ``attributes.csv`` (header ``image_id``
  and the 40 attributes, values 0/1).
* LFW, official: ``lfw-deepfunneled/<Person>/<Person>_NNNN.jpg`` (or ``lfw/``, ``lfw_funneled/``)
  + ``male_names.txt`` and ``female_names.txt`` (one file name a line).
* LFW, as in ``../shared/data/lfw/{rgb150,gray250_min20}/``: ``images/`` + ``labels.csv``
  (``image,person,person_id,image_num,gender``; gender M, F or empty).
* ImageNet: ``train/<wnid>/*`` and ``val/<wnid>/*`` holding the synsets of the task's shipped list
  (``dapter_tf/synsets/``); Imagenette's folders have this layout.

Sets without an official test split are split once by a fixed permutation (``SPLIT_SEED``): the
last ``TEST_FRACTION`` is the test split for every run, whatever its ``--seed``, so a converter or
an attacker trained with another seed never trains on a target's test images.
"""

import csv
import importlib.resources
import os

import numpy as np
from PIL import Image

from dapter_tf.data.images import ImageSet
from dapter_tf.data.tasks import CELEBA_ATTRIBUTES, Task
from dapter_tf.errors import DapterError

SPLIT_SEED = 2021
TEST_FRACTION = 0.2
# Deep-funneled LFW frames are 250x250 with the face in the middle; the shared rgb150 set is their
# central 150x150, so 250x250 frames (official and gray layouts) are cut to the same window.
LFW_FRAME = 250
LFW_FACE_BOX = (50, 50, 200, 200)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def read_folder(task: Task, data_dir: str, split: str, max_images: int = 0, seed: int = 0):
    """Reads one split of ``task``'s images from a dataset folder.

    Args:
        task: ``celeba``, ``lfw``, ``imagenet10`` or ``imagenet8_32``.
        data_dir: The dataset's root folder, in one of the layouts of this module's docstring.
        split: ``"train"`` or ``"test"``.
        max_images: Keep at most this many images (0: all), chosen after a shuffle seeded by ``seed``.
        seed: Seeds the order of the images.

    Returns:
        A ``data.ImageSet`` of the task's prepared pixels and all its labels.

    Raises:
        DapterError: if the folder is missing, its layout is not recognised, or a file is unreadable.
    """
    if not os.path.isdir(data_dir):
        raise DapterError(f"dataset folder not found: {data_dir}")
    if split not in ("train", "test"):
        raise DapterError(f"unknown split {split!r}; use 'train' or 'test'")
    readers = {"celeba": _list_celeba, "lfw": _list_lfw, "imagenet10": _list_imagenet, "imagenet8_32": _list_imagenet}
    if task.name not in readers:
        raise DapterError(f"task {task.name!r} is not read from folders")
    paths, labels, layout, split_done = readers[task.name](task, data_dir, split)
    if not split_done:
        paths, labels = fixed_split(paths, labels, split)
    order = np.random.default_rng(seed).permutation(len(paths))
    if max_images:
        order = order[:max_images]
    if not len(order):
        raise DapterError(f"{data_dir}: no images for the {split} split ({layout} layout)")
    crop = LFW_FACE_BOX if task.name == "lfw" else None
    images = task.prepare_images([_decode(paths[i], crop) for i in order])
    names = np.array([os.path.basename(paths[i]) for i in order])
    return ImageSet(images, {k: v[order] for k, v in labels.items()}, f"{data_dir} ({layout}, {split})", names)


def fixed_split(paths, labels, split):
    """The ``split`` of a set without an official one: the same images for every run (``SPLIT_SEED``).

    Args:
        paths: Every image's path, in a fixed order (the order the files were listed in).
        labels: Label name -> an array with one value per path.
        split: ``"train"`` or ``"test"`` (the last ``TEST_FRACTION`` of a ``SPLIT_SEED`` permutation).

    Returns:
        (paths, labels) of the split, in the order they were given.
    """
    order = np.random.default_rng(SPLIT_SEED).permutation(len(paths))
    n_test = int(round(len(paths) * TEST_FRACTION))
    keep = order[len(paths) - n_test :] if split == "test" else order[: len(paths) - n_test]
    keep = np.sort(keep)
    return [paths[i] for i in keep], {k: v[keep] for k, v in labels.items()}


def _decode(path: str, crop_250=None) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, ValueError) as e:
        raise DapterError(f"{path}: not a readable image ({e})") from None
    if crop_250 is not None and image.size == (LFW_FRAME, LFW_FRAME):
        image = image.crop(crop_250)
    return image


def _read_rows(path: str, delimiter=None):
    try:
        with open(path, newline="") as f:
            if delimiter == ",":
                return list(csv.reader(f))
            return [line.split() for line in f if line.strip()]
    except OSError as e:
        raise DapterError(f"{path}: cannot read ({e})") from None


def _list_celeba(task: Task, root: str, split: str):
    official = os.path.join(root, "list_attr_celeba.txt")
    shared = os.path.join(root, "attributes.csv")
    if os.path.isfile(official):
        rows = _read_rows(official)
        # Line 1 is the image count, line 2 the attribute names, then "<file> <40 values of -1/1>".
        header, body = rows[1], rows[2:]
        image_dir, layout = os.path.join(root, "img_align_celeba"), "official CelebA"
        names = [r[0] for r in body]
        values = np.array([[int(v) for v in r[1:]] for r in body], np.int64)
        values = (values > 0).astype(np.int64)
    elif os.path.isfile(shared):
        rows = _read_rows(shared, ",")
        header, body = rows[0][1:], rows[1:]
        image_dir, layout = os.path.join(root, "images"), "shared CelebA"
        names = [r[0] for r in body]
        values = np.array([[int(v) for v in r[1:]] for r in body], np.int64)
    else:
        raise DapterError(
            f"{root}: not a CelebA folder: expected list_attr_celeba.txt + img_align_celeba/ (official) "
            f"or attributes.csv + images/ (the ../shared/data/celeba layout)"
        )
    if tuple(header) != CELEBA_ATTRIBUTES or values.shape[1:] != (len(CELEBA_ATTRIBUTES),):
        raise DapterError(f"{root}: the attribute header is not CelebA's 40 attributes in the official order")
    if not os.path.isdir(image_dir):
        raise DapterError(f"{root}: image folder {os.path.basename(image_dir)}/ is missing")
    paths = [os.path.join(image_dir, n) for n in names]
    labels = {a: values[:, i] for i, a in enumerate(CELEBA_ATTRIBUTES)}
    partition = os.path.join(root, "list_eval_partition.txt")
    if layout.startswith("official") and os.path.isfile(partition):
        part = {r[0]: int(r[1]) for r in _read_rows(partition)}
        # The official train partition (0) trains; validation (1) and test (2) are held out.
        keep = np.array([(part.get(n, 0) == 0) == (split == "train") for n in names])
        return [p for p, k in zip(paths, keep) if k], {a: v[keep] for a, v in labels.items()}, layout, True
    return paths, labels, layout, False


def _list_lfw(task: Task, root: str, split: str):
    shared = os.path.join(root, "labels.csv")
    if os.path.isfile(shared):
        rows = _read_rows(shared, ",")
        if rows[0][:5] != ["image", "person", "person_id", "image_num", "gender"]:
            raise DapterError(f"{shared}: expected the header image,person,person_id,image_num,gender")
        # Images of unknown gender (in both gender lists, or neither) cannot serve the gender target.
        body = [r for r in rows[1:] if r[4] in ("M", "F")]
        paths = [os.path.join(root, "images", r[0]) for r in body]
        genders = [r[4] == "M" for r in body]
        # The file's own numbering (people sorted by name), so ids match labels.csv row for row.
        identities = [int(r[2]) for r in body]
        layout = "shared LFW"
    else:
        image_root = next(
            (
                os.path.join(root, d)
                for d in ("lfw-deepfunneled", "lfw_funneled", "lfw")
                if os.path.isdir(os.path.join(root, d))
            ),
            None,
        )
        lists = [os.path.join(root, f) for f in ("male_names.txt", "female_names.txt")]
        if image_root is None or not all(os.path.isfile(f) for f in lists):
            raise DapterError(
                f"{root}: not an LFW folder: expected lfw-deepfunneled/<Person>/ + male_names.txt + "
                f"female_names.txt (official) or labels.csv + images/ (the ../shared/data/lfw layouts)"
            )
        male = {r[0] for r in _read_rows(lists[0])}
        female = {r[0] for r in _read_rows(lists[1])}
        paths, people, genders = [], [], []
        for person in sorted(os.listdir(image_root)):
            folder = os.path.join(image_root, person)
            if not os.path.isdir(folder):
                continue
            for name in sorted(os.listdir(folder)):
                if (name in male) == (name in female):  # In both lists or neither: unknown.
                    continue
                paths.append(os.path.join(folder, name))
                people.append(person)
                genders.append(name in male)
        layout = f"official LFW ({os.path.basename(image_root)})"
        # People numbered by sorted name over the whole folder (as labels.csv does), so both splits agree.
        ids = {p: i for i, p in enumerate(sorted(set(people)))}
        identities = [ids[p] for p in people]
    labels = {"gender": np.array(genders, np.int64), "identity": np.array(identities, np.int64)}
    return paths, labels, layout, False


def imagenet_synsets(task_name: str):
    """Reads the synset list the project ships for an ImageNet task (``dapter_tf/synsets/``).

    Returns:
        (fine wnids, coarse index of each, coarse names, fine names), in label order.
    """
    text = (importlib.resources.files("dapter_tf") / "synsets" / f"{task_name}.tsv").read_text()
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    coarse_names = list(dict.fromkeys(r[1] for r in rows))
    return (
        [r[0] for r in rows],
        np.array([coarse_names.index(r[1]) for r in rows], np.int64),
        coarse_names,
        [r[2] for r in rows],
    )


def _list_imagenet(task: Task, root: str, split: str):
    folder = os.path.join(root, "train" if split == "train" else "val")
    if not os.path.isdir(folder):
        raise DapterError(f"{root}: not an ImageNet-style folder: expected train/<wnid>/ and val/<wnid>/")
    wnids, coarse, _, _ = imagenet_synsets(task.name)
    missing = [w for w in wnids if not os.path.isdir(os.path.join(folder, w))]
    if missing:
        raise DapterError(f"{folder}: missing synset folder(s) {', '.join(missing)} of task {task.name!r}")
    paths, fine = [], []
    for index, wnid in enumerate(wnids):
        names = sorted(n for n in os.listdir(os.path.join(folder, wnid)) if n.lower().endswith(IMAGE_EXTENSIONS))
        paths += [os.path.join(folder, wnid, n) for n in names]
        fine += [index] * len(names)
    fine = np.array(fine, np.int64)
    labels = {"label": fine} if task.name == "imagenet10" else {"coarse_label": coarse[fine], "label": fine}
    return paths, labels, "ImageNet folder", True
