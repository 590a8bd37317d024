"""Rebuilds dapter_tf/assets/cifar10_sample.npz, the embedded default data, from the shared CIFAR-10 files.

Takes the first --train_per_class images of each class from train_20k.npz and the first
--test_per_class of each class from test.npz, with their labels and source file names, and writes
them as one .npz whose members are LZMA-compressed (np.load reads it like any .npz).
"""

import os
import zipfile

import numpy as np
from absl import app, flags

_SHARED_CIFAR10 = flags.DEFINE_string(
    "shared_cifar10", "../shared/data/cifar10", "Folder holding train_20k.npz and test.npz."
)
_TRAIN_PER_CLASS = flags.DEFINE_integer("train_per_class", 350, "Training images taken per class.")
_TEST_PER_CLASS = flags.DEFINE_integer("test_per_class", 50, "Test images taken per class.")
_OUTPUT = flags.DEFINE_string("output", "dapter_tf/assets/cifar10_sample.npz", "Where to write the sample.")


def _first_per_class(path, per_class):
    with np.load(path) as d:
        x, y, names, files = d["x"], d["y"], d["class_names"], d["source_file"]
    keep = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(len(names))])
    return x[keep], y[keep].astype(np.int64), names, files[keep]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    x_train, y_train, names, f_train = _first_per_class(
        os.path.join(_SHARED_CIFAR10.value, "train_20k.npz"), _TRAIN_PER_CLASS.value
    )
    x_test, y_test, _, f_test = _first_per_class(os.path.join(_SHARED_CIFAR10.value, "test.npz"), _TEST_PER_CLASS.value)
    arrays = dict(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=names,
        source_file_train=f_train,
        source_file_test=f_test,
    )
    tmp = _OUTPUT.value + ".tmp"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_LZMA) as archive:
        for key, value in arrays.items():
            with archive.open(f"{key}.npy", "w") as f:
                np.lib.format.write_array(f, np.asarray(value), allow_pickle=False)
    os.replace(tmp, _OUTPUT.value)
    print(
        f"wrote {_OUTPUT.value}: {len(x_train)} train + {len(x_test)} test images, "
        f"{os.path.getsize(_OUTPUT.value) / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    app.run(main)
