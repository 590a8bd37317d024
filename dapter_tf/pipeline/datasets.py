"""The datasets a plan reads: which files under the data folder each needs, and which are present."""

import os

# Files that must exist under the data folder (../shared/data's layout) for a dataset to be run.
DATASET_FILES = {
    "cifar10": ("cifar10/train_20k.npz", "cifar10/test.npz"),
    "celeba": ("celeba/attributes.csv", "celeba/images"),
    "lfw": ("lfw/gray250_min20/labels.csv", "lfw/gray250_min20/images"),
}
# The embedded CIFAR-10 sample ships with dapter_tf: always there.
EMBEDDED = "embedded"
# Datasets of the paper that no plan can run offline, and why (the report lists them).
NOT_AVAILABLE = {
    "Cifar20:100": "no CIFAR-100 copy exists offline (../shared/data has none and tfds cannot download "
    "here); the hierarchical CIFAR-10 task cifar2_10 (vehicle/animal -> 10 classes) stands in for it",
    "ImageNet10, ImageNet8:32": "no ImageNet copy exists here; with one, run the same binaries with "
    "--dataset=imagenet10 or imagenet8_32 --source=folder --data_dir=IMAGENET",
}


def available_datasets(data_dir: str) -> dict[str, str | None]:
    """Returns, for each dataset of ``DATASET_FILES``, None where it is present or why it is not."""
    missing = {}
    for name, files in DATASET_FILES.items():
        absent = [f for f in files if not os.path.exists(os.path.join(data_dir, f))]
        missing[name] = f"{os.path.join(data_dir, absent[0])} does not exist" if absent else None
    missing[EMBEDDED] = None
    return missing
