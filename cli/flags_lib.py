"""The data flags every binary shares (and the ``DataConfig`` they build), and helpers for list flags.

The flags of training live in ``cli.training_flags``, those of attacks in ``cli.attack_flags``;
``cli.runner`` runs a binary's main.

The library takes explicit config objects; only binaries define flags (see STYLE.md).
"""

import os

from absl import flags

from dapter_tf import DapterError
from dapter_tf.resize import RESIZE_POLICY


def define_data_flags():
    """Defines the flags that say where images come from; returns a function building a DataConfig."""
    dataset = flags.DEFINE_string(
        "dataset",
        "cifar10",
        "Task (dataset, target label, attack labels) to train for: cifar10; cifar2_10 (vehicle/animal "
        "-> 10 classes, the offline stand-in for Cifar20:100); cifar20_100 (tfds cifar100); celeba "
        "(target: --target_label, default Male); lfw (gender -> identity); imagenet10; imagenet8_32; photos "
        "(your own labelled photos: a folder per class in --data_dir, or a CSV in --labels_csv; labels, classes "
        "and their names come from the files).",
    )
    source = flags.DEFINE_string(
        "source",
        "embedded",
        "Where the images come from: embedded, npz, folder, csv, tfds or tfrecord. 'embedded' is the CIFAR-10 "
        "sample packaged with dapter_tf (3,500 training and 500 test images); 'npz' reads --train_npz and "
        "--test_npz; 'folder' reads a dataset's on-disk layout in --data_dir (CelebA, LFW, ImageNet; "
        "official layouts and those of ../shared/data; for --dataset=photos, <data_dir>/<class>/<photo>); "
        "'csv' reads the photos --labels_csv lists (--dataset=photos, which picks csv or folder itself when "
        "--source is not given); 'tfds' reads tensorflow-datasets from --tfds_data_dir; "
        "'tfrecord' reads the shards dapter-write-records wrote in --data_dir (trainers stream them, so "
        "memory does not grow with the set).",
    )
    data_dir = flags.DEFINE_string(
        "data_dir",
        None,
        "With --source=folder: the dataset's folder, e.g. ../shared/data/celeba, ../shared/data/lfw/rgb150, "
        "a folder with img_align_celeba/ + list_attr_celeba.txt, or an ImageNet folder with train/ and val/; "
        "with --dataset=photos, a folder per class (<data_dir>/<class>/*.jpg|jpeg|png|bmp; the classes are the "
        "sorted folder names, the target's label is called 'label'). "
        "With --source=tfrecord: the records folder (its manifest.json and shards).",
    )
    target_label = flags.DEFINE_string(
        "target_label",
        None,
        "The label the target serves instead of the task's default; every other label becomes an "
        "attack label. CelebA: any of its 40 attributes, e.g. Male, Smiling, Eyeglasses.",
    )
    image_size = flags.DEFINE_integer(
        "image_size",
        0,
        "Square image side (a multiple of 4) to crop and resize every image to; 0: the task's own "
        "(32 for CIFAR, 64 for CelebA, LFW and photos, 224 for ImageNet). Photos of any size are brought to it "
        "by the policy dapter-convert and the Android harness apply too: " + RESIZE_POLICY + ".",
    )
    tfds_manual_dir = flags.DEFINE_string(
        "tfds_manual_dir", None, "With --source=tfds --download: where tfds finds archives it cannot download itself."
    )
    train_npz = flags.DEFINE_string(
        "train_npz", None, "With --source=npz: .npz with 'x' (uint8 N x H x W x 3) and 'y' (labels) to train on."
    )
    test_npz = flags.DEFINE_string("test_npz", None, "With --source=npz: .npz of held-out images to measure on.")
    tfds_data_dir = flags.DEFINE_string(
        "tfds_data_dir", None, "With --source=tfds: tfds's data directory (tfds's default if unset)."
    )
    download = flags.DEFINE_bool(
        "download",
        False,
        "With --source=tfds: let tfds download the dataset (needs network). Off, a "
        "dataset that is not prepared fails at once.",
    )
    max_train = flags.DEFINE_integer(
        "max_train", 0, "Use at most this many training images, after a seeded shuffle (0: all)."
    )
    max_test = flags.DEFINE_integer(
        "max_test", 0, "Use at most this many test images, after a seeded shuffle (0: all)."
    )
    labels_csv = flags.DEFINE_string(
        "labels_csv",
        None,
        "With --dataset=photos: a CSV with a header row, one row per photo: its file (--file_column, relative to "
        "the CSV's folder), the target's label (--label_column), any attack labels (--attack_columns) and, "
        "optionally, a 'split' column of train or test (without it, a fixed 20% test split, the same for every "
        "--seed). Labels may be words or integers; each label's classes are its sorted distinct values.",
    )
    label_column = flags.DEFINE_string(
        "label_column", "label", "With --labels_csv: the column of the label the target serves."
    )
    file_column = flags.DEFINE_string(
        "file_column", "file", "With --labels_csv: the column of photo paths, relative to the CSV's folder."
    )
    attack_columns = flags.DEFINE_list(
        "attack_columns",
        [],
        "With --labels_csv: columns of labels a greedy provider would like to read off the converted photos "
        "(comma-separated); the labelling attackers of the attack suite are trained on them.",
    )

    def build():
        from dapter_tf.data import DataConfig  # Imports TensorFlow: only once flags are parsed.

        photo_source = "csv" if labels_csv.value else "folder"
        return DataConfig(
            dataset=dataset.value,
            # The photos task's source follows from its flags where --source is not given.
            source=photo_source if dataset.value == "photos" and not source.present else source.value,
            train_npz=train_npz.value,
            test_npz=test_npz.value,
            data_dir=data_dir.value,
            tfds_data_dir=tfds_data_dir.value,
            tfds_manual_dir=tfds_manual_dir.value,
            download=download.value,
            target_label=target_label.value,
            image_size=image_size.value,
            max_train=max_train.value,
            max_test=max_test.value,
            labels_csv=labels_csv.value,
            label_column=label_column.value,
            file_column=file_column.value,
            attack_columns=tuple(attack_columns.value),
        )

    return build


def write_summary(workdir: str, lines) -> None:
    """Writes ``lines`` to ``workdir/summary.txt`` and prints them."""
    from dapter_tf.records.files import atomic_file

    text = "\n".join(lines)
    with atomic_file(os.path.join(workdir, "summary.txt"), "w") as f:
        f.write(text + "\n")
    print(text)


def parse_ints(values, flag: str) -> tuple:
    """A list flag's values as integers; DapterError naming ``flag`` otherwise."""
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise DapterError(f"{flag} must be integers, got {','.join(values)}") from None


def parse_pairs(values, flag: str) -> dict:
    """A list flag of ``name=value`` items as a dict; DapterError naming ``flag`` otherwise."""
    pairs = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise DapterError(f"{flag} takes name=value items, got {item!r}")
        pairs[name] = value
    return pairs
