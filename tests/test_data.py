"""Loading real images: the embedded sample, .npz files, tfds offline, and every kind of bad input."""

import time
from unittest import mock

import numpy as np
import pytest
from conftest import save_npz

from dapter_tf import DapterError, data
from dapter_tf.data import sources
from dapter_tf.data.tasks import CIFAR10_CLASS_NAMES, get_task


def test_embedded_sample_is_real_balanced_cifar10(embedded):
    train, test = embedded
    assert train.images.shape == (3500, 32, 32, 3) and test.images.shape == (500, 32, 32, 3)
    assert train.images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(train.labels["label"]), [350] * 10)
    np.testing.assert_array_equal(np.bincount(test.labels["label"]), [50] * 10)
    # Real photographs, not noise or constants: CIFAR-10 images carry 18-23 bits of entropy.
    from dapter_tf.metrics import image_entropy

    assert 15 < image_entropy(test.images).mean() < 23.5


def test_embedded_sample_matches_the_shared_test_set(embedded, cifar10_test_npz):
    # The sample's test split is the first 50 images of each class of the shared test.npz.
    shared = data.load_npz(str(cifar10_test_npz))
    np.testing.assert_array_equal(embedded[1].images[:50], shared.images[:50])
    np.testing.assert_array_equal(embedded[1].images[50:100], shared.images[1000:1050])


def test_shared_cifar10_test_set_loads_with_known_rows(cifar10_test_npz):
    test = data.load_npz(str(cifar10_test_npz))
    assert test.images.shape == (10000, 32, 32, 3)
    labels = test.labels["label"]
    # The file is sorted by class (README of ../shared/data): rows 0-999 airplanes, 9000-9999 trucks.
    assert labels[0] == 0 and labels[999] == 0 and labels[1000] == 1 and labels[9999] == 9
    assert CIFAR10_CLASS_NAMES[labels[5500]] == "dog"


def test_load_data_shuffles_and_caps(cifar10_test_npz):
    config = data.DataConfig(
        source="npz", train_npz=str(cifar10_test_npz), test_npz=str(cifar10_test_npz), max_train=200, max_test=50
    )
    task, train, test = data.load_data(config, seed=3)
    assert task.num_classes == 10 and len(train) == 200 and len(test) == 50
    assert len(np.unique(train.labels["label"])) == 10  # Shuffled: not all from the first class.


def test_build_dataset_yields_float_batches_in_unit_range(embedded):
    images = embedded[1].images[:10]
    ds = data.build_dataset(images, embedded[1].labels["label"][:10], 4, shuffle_seed=1, augment=True)
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    x = batches[0][0].numpy()
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0


def test_seeded_shuffle_is_reproducible(embedded):
    images, labels = embedded[1].images[:64], embedded[1].labels["label"][:64]
    first = [y.numpy().tolist() for _, y in data.build_dataset(images, labels, 16, shuffle_seed=7)]
    again = [y.numpy().tolist() for _, y in data.build_dataset(images, labels, 16, shuffle_seed=7)]
    assert first == again


def _rgb(n=4, size=32, dtype=np.uint8):
    return np.zeros((n, size, size, 3), dtype)


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((4, 32, 32), np.uint8), "must have rank 4"),
        (np.zeros((4, 32, 32, 1), np.uint8), "must have 3 \\(RGB\\) channels"),
        (np.zeros((4, 32, 32, 4), np.uint8), "must have 3 \\(RGB\\) channels"),
        (np.zeros((4, 32, 32, 3), np.float32), "must be uint8"),
        (np.zeros((0, 32, 32, 3), np.uint8), "the dataset is empty"),
    ],
    ids=["rank3", "gray", "rgba", "float32", "empty"],
)
def test_bad_image_arrays_are_rejected(tmp_path, x, message):
    path = save_npz(tmp_path / "bad.npz", x, np.zeros(len(x), np.int64))
    with pytest.raises(DapterError, match=message):
        data.load_npz(path)


def test_missing_file(tmp_path):
    with pytest.raises(DapterError, match="data file not found"):
        data.load_npz(str(tmp_path / "missing.npz"))


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.npz"
    path.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(DapterError, match="not a readable .npz file"):
        data.load_npz(str(path))


def test_npz_without_labels(tmp_path):
    path = tmp_path / "x_only.npz"
    np.savez(path, x=_rgb())
    with pytest.raises(DapterError, match="missing array\\(s\\) y"):
        data.load_npz(str(path))


def test_labels_of_the_wrong_length(tmp_path):
    path = save_npz(tmp_path / "short.npz", _rgb(4), np.zeros(3, np.int64))
    with pytest.raises(DapterError, match="label 'label' has shape \\(3,\\), expected \\(4,\\)"):
        data.load_npz(path)


def test_labels_outside_the_task(tmp_path):
    path = save_npz(tmp_path / "eleven.npz", _rgb(2), [0, 10])
    with pytest.raises(DapterError, match="label 'label' must lie in 0..9"):
        data.load_split(get_task("cifar10"), "npz", "train", npz_path=path)


def test_images_are_brought_to_the_task_size_which_must_suit_the_converter(tmp_path):
    path = save_npz(tmp_path / "odd.npz", np.full((4, 30, 30, 3), 9, np.uint8))
    _, train, _ = data.load_data(data.DataConfig(source="npz", train_npz=path, test_npz=path))
    assert train.images.shape == (4, 32, 32, 3) and (train.images == 9).all()
    with pytest.raises(DapterError, match="multiples of 4, got 30x30"):
        data.DataConfig(source="npz", train_npz=path, test_npz=path, image_size=30)


def test_unknown_dataset_and_source():
    with pytest.raises(DapterError, match="unknown dataset 'imagenet99'; choose one of: celeba, cifar10, "):
        data.DataConfig(dataset="imagenet99")
    with pytest.raises(DapterError, match="unknown data source 'ftp'"):
        data.DataConfig(source="ftp")


def test_npz_source_needs_a_path():
    with pytest.raises(DapterError, match="--source=npz needs a path for the train split"):
        data.load_data(data.DataConfig(source="npz"))


@pytest.mark.parametrize("dataset", ["cifar10", "cifar20_100", "celeba"])
def test_tfds_not_prepared_fails_at_once_offline(tmp_path, dataset):
    task = get_task(dataset)
    start = time.monotonic()
    with pytest.raises(DapterError, match=f"tfds dataset '{task.tfds_name}' is not prepared .* not available offline"):
        data.load_data(data.DataConfig(dataset=dataset, source="tfds", tfds_data_dir=str(tmp_path)))
    # Not a speed target: a download attempt without network retries for minutes, this must not.
    assert time.monotonic() - start < 60


def test_tfds_download_without_network_fails_at_once(tmp_path):
    try:
        data.check_reachable(data.TFDS_HOSTS["cifar10"], timeout=2)
        pytest.skip("this machine reaches the network: a real download would start")
    except DapterError:
        pass
    start = time.monotonic()
    with pytest.raises(DapterError, match="--download needs network, but www.cs.toronto.edu cannot be reached"):
        data.load_data(data.DataConfig(source="tfds", tfds_data_dir=str(tmp_path), download=True))
    assert time.monotonic() - start < 60  # tfds itself would retry for minutes.


def test_tfds_unknown_dataset():
    import dataclasses

    task = dataclasses.replace(get_task("cifar10"), tfds_name="no_such_dataset")
    with pytest.raises(DapterError, match="tfds has no dataset called 'no_such_dataset'"):
        data.load_tfds(task, "test")


def test_source_the_task_cannot_read():
    with pytest.raises(
        DapterError, match="dataset 'celeba' cannot be read with --source=npz; use one of: folder, tfds"
    ):
        data.DataConfig(dataset="celeba", source="npz")
    with pytest.raises(DapterError, match="--source=folder needs the dataset's folder"):
        data.load_data(data.DataConfig(dataset="lfw", source="folder"))


@pytest.mark.parametrize("dataset, label", [("cifar20_100", None), ("celeba", "Eyeglasses"), ("cifar2_10", None)])
def test_tfds_features_become_the_tasks_labels(dataset, label, tmp_path):
    # No network here, so no prepared tfds dataset: tfds's own mock_data generates examples from the
    # real builders' feature specs (random pixels and labels), which is what the label mapping reads.
    import tensorflow_datasets as tfds

    task = get_task(dataset, target_label=label, image_size=32)
    with tfds.testing.mock_data(num_examples=8), mock.patch.object(sources, "check_reachable"):
        images = data.load_tfds(task, "test", data_dir=str(tmp_path), download=True)
    assert images.images.shape == (8, 32, 32, 3) and images.images.dtype == np.uint8
    assert set(images.labels) == set(task.label_classes)
    for name, classes in task.label_classes.items():
        assert 0 <= images.labels[name].min() and images.labels[name].max() < classes
    if dataset == "cifar2_10":
        vehicle = np.isin(images.labels["label"], [0, 1, 8, 9])
        np.testing.assert_array_equal(images.labels["superclass"], ~vehicle)
