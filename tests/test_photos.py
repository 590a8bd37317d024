"""The photos task (a provider's own labelled photos) and the one resize policy every side shares."""

import os

import numpy as np
import PIL.Image
import pytest
from conftest import assert_one_error_line, run_binary

from dapter_tf import DapterError, data
from dapter_tf.data import folders
from dapter_tf.resize import centre_crop_box, fit_image


def _save(path, width, height, value, mode="RGB"):
    """A photo of one colour per row (row y is ``value + y``), so a crop and a resize show in its pixels."""
    rows = (value + np.arange(height, dtype=np.uint8))[:, None, None]
    pixels = np.broadcast_to(rows, (height, width, 3)).astype(np.uint8)
    image = PIL.Image.fromarray(pixels)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    (image.convert("L") if mode == "L" else image).save(path)


def test_fit_image_by_hand():
    # 6 wide, 2 tall to 1x1: the centre 2x2 square (columns 2 and 3), then its mean, width first, each
    # pass rounded half up: rows (10 + 20) / 2 = 15 and (30 + 41) / 2 = 35.5 -> 36, then 25.5 -> 26 (not 25.25).
    pixels = np.zeros((2, 6, 3), np.uint8)
    pixels[:, 2:4, 0] = [[10, 20], [30, 41]]
    pixels[:, 2:4, 1] = [[1, 2], [3, 4]]  # 1.5 -> 2 and 3.5 -> 4, then 3.
    pixels[:, [0, 1, 4, 5], 2] = 255  # Cut away: no trace of it.
    assert fit_image(PIL.Image.fromarray(pixels), 1, 1).tolist() == [[[26, 3, 0]]]
    # 4x4 to 1 tall, 2 wide: the centre rows 1 and 2 (4 wide, 4 * 1 // 2 = 2 tall), each half averaged.
    square = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    fitted = fit_image(PIL.Image.fromarray(square), 1, 2)  # Grey in, RGB out.
    assert fitted.shape == (1, 2, 3)
    assert fitted[..., 0].tolist() == [[(40 + 50 + 80 + 90) / 4, (60 + 70 + 100 + 110) / 4]]
    # A photo of the target's size comes back as it is; a 300x451 photo keeps its middle 300x300.
    same = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    np.testing.assert_array_equal(fit_image(PIL.Image.fromarray(same), 4, 4), same)
    assert centre_crop_box(300, 451, 32, 32) == (0, 75, 300, 375)
    # 3:2 of 7 wide is 4.67 tall, rounded down to 4; the odd margin falls at the bottom.
    assert centre_crop_box(7, 5, 2, 3) == (0, 0, 7, 4)
    with pytest.raises(DapterError, match=r"cannot resize a photo to 0x4 \(width x height\)"):
        fit_image(PIL.Image.fromarray(same), 4, 0)


@pytest.fixture
def pet_folder(tmp_path):
    """A folder per class: 6 cats and 4 dogs of assorted sizes, one of them grey, plus a stray text file."""
    root = tmp_path / "pets"
    for i, (width, height) in enumerate([(12, 20), (20, 12), (8, 8), (9, 15), (16, 16), (30, 10)]):
        _save(str(root / "cat" / f"c{i}.png"), width, height, 10 * i, "L" if i == 2 else "RGB")
    for i in range(4):
        _save(str(root / "dog" / f"d{i}.jpg"), 10 + i, 12, 100 + 10 * i)
    (root / "dog" / "notes.txt").write_text("not a photo")
    return root


def test_a_folder_per_class_is_a_task_with_a_fixed_split(pet_folder):
    config = data.DataConfig(dataset="photos", source="folder", data_dir=str(pet_folder), image_size=8)
    task, train, test = data.load_data(config, seed=0)
    assert (task.name, task.target_label, task.attack_labels) == ("photos", "label", ())
    assert task.label_classes == {"label": 2} and task.class_names == ("cat", "dog") and task.image_size == (8, 8)
    assert (len(train), len(test)) == (8, 2) and train.images.shape[1:] == (8, 8, 3)
    # The test split is the shared folders' fixed one: the same photos for every seed.
    everything = [f"cat/c{i}.png" for i in range(6)] + [f"dog/d{i}.jpg" for i in range(4)]
    expected, _ = folders.fixed_split(everything, {}, "test")
    _, _, other_seed = data.load_data(config, seed=5)
    assert sorted(test.names) == sorted(other_seed.names) == sorted(expected)
    for name, label, pixels in zip(test.names, test.labels["label"], test.images):
        assert label == ("dog" in name)
        with PIL.Image.open(pet_folder / name) as photo:
            np.testing.assert_array_equal(pixels, fit_image(photo, 8, 8))
    # The 12x20 cat keeps its middle 12x12 (rows 4..15, of values 4..15), box-averaged to 8 rows: the
    # first is the mean of rows 4 and 5 (4.5, rounded up), the last row 15 alone.
    both = {n: image for s in (train, test) for n, image in zip(s.names, s.images)}
    assert both["cat/c0.png"][:, 0, 0].tolist() == [5, 6, 8, 9, 11, 12, 14, 15]


def _csv(tmp_path, lines, photos=("a.png", "b.png", "c.png", "d.png", "e.png")):
    folder = tmp_path / "shoot"
    for i, name in enumerate(photos):
        _save(str(folder / "img" / name), 10 + i, 8, 20 * i)
    path = folder / "labels.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_a_csv_is_a_task_with_word_and_integer_labels_and_attack_columns(tmp_path):
    path = _csv(
        tmp_path,
        [
            "file,species,age,split",
            "img/a.png,owl,10,train",
            "img/b.png,cat,9,train",
            "img/c.png,owl,100,test",
            "img/d.png,emu,9,train",
            "img/e.png,cat,10,test",
        ],
    )
    config = data.DataConfig(
        dataset="photos", source="csv", labels_csv=path, label_column="species", attack_columns=("age",), image_size=4
    )
    task, train, test = data.load_data(config, seed=1)
    assert (task.target_label, task.attack_labels, task.class_names) == ("species", ("age",), ("cat", "emu", "owl"))
    assert task.label_classes == {"species": 3, "age": 3}  # Ages 9 < 10 < 100, numerically.
    by_name = dict(zip(test.names, zip(test.labels["species"], test.labels["age"])))
    assert by_name == {"img/c.png": (2, 2), "img/e.png": (0, 1)}  # The split column decides.
    assert sorted(train.names) == ["img/a.png", "img/b.png", "img/d.png"]
    # Integers as the target: classes sorted numerically, named by their values.
    age_task = data.config_task(data.DataConfig(dataset="photos", source="csv", labels_csv=path, label_column="age"))
    assert age_task.class_names == ("9", "10", "100") and age_task.image_size == (64, 64)


def _error(**fields) -> str:
    with pytest.raises(DapterError) as raised:
        config = data.DataConfig(dataset="photos", image_size=4, **fields)
        data.load_data(config)
    return str(raised.value)


def test_bad_photo_sets_are_one_line_naming_the_file(tmp_path, pet_folder):
    header = "file,species,split"
    rows = [f"img/{n}.png,{s},{p}" for n, s, p in zip("abcde", ["owl", "cat", "owl", "emu", "cat"], ["train"] * 5)]
    path = _csv(tmp_path, [header, *rows])
    assert _error(source="csv", labels_csv=path, label_column="species") == (
        f"{path}: the test split is empty: its 'split' column names no 'test' row"
    )
    assert _error(source="csv", labels_csv=path, label_column="kind") == (
        f"{path}: no column 'kind' (--label_column); its columns are: file, species, split"
    )
    missing = _csv(tmp_path, ["file,species", *[f"gone/{i}.png,owl" for i in range(4)], "img/a.png,cat"])
    assert _error(source="csv", labels_csv=missing, label_column="species") == (
        f"{missing}: 4 of 5 file(s) it names are missing, e.g. gone/0.png, gone/1.png, gone/2.png "
        f"(paths are relative to {os.path.dirname(missing)})"
    )
    one_value = _csv(tmp_path, ["file,species", "img/a.png,owl", "img/b.png,owl"])
    assert _error(source="csv", labels_csv=one_value, label_column="species") == (
        f"{one_value}: label 'species' has one class ('owl', the only value of column 'species'); "
        "a task needs at least two classes"
    )
    (pet_folder / "cat" / "c1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert _error(source="folder", data_dir=str(pet_folder)).startswith(
        f"{pet_folder / 'cat' / 'c1.png'}: not a readable image ("
    )
    assert _error(source="csv", labels_csv=path, label_column="species", data_dir=str(pet_folder)) == (
        "--source=csv reads the photos the CSV names, relative to its folder: drop --data_dir"
    )
    assert _error(source="csv", label_column="species") == (
        "--dataset=photos --source=csv needs the labels file (--labels_csv)"
    )
    with pytest.raises(DapterError, match="^--labels_csv, --attack_columns and --source=csv describe the provider's"):
        data.DataConfig(dataset="cifar10", labels_csv=path)


def test_a_one_class_folder_is_one_error_line_and_nothing_written(tmp_path):
    root = tmp_path / "one"
    for i in range(3):
        _save(str(root / "cat" / f"c{i}.png"), 8, 8, i)
    out = tmp_path / "records"
    # No --source: --dataset=photos with a --data_dir reads a folder per class.
    proc = run_binary("experiments.write_records", "--dataset=photos", f"--data_dir={root}", f"--out_dir={out}")
    assert_one_error_line(
        proc,
        f"{root}: label 'label' has one class ('cat', the only class folder); a task needs at least two classes",
    )
    assert proc.returncode == 1 and not out.exists() and sorted(os.listdir(tmp_path)) == ["one"]


def test_photos_written_as_records_read_back_with_their_labels(pet_folder, tmp_path):
    from dapter_tf.data import tfrecords

    config = data.DataConfig(dataset="photos", source="folder", data_dir=str(pet_folder), image_size=8)
    task, train, test = data.load_data(config)
    tfrecords.write_records(task.name, {"train": train, "test": test}, str(tmp_path / "rec"), {"train": 2, "test": 1})
    records = data.DataConfig(dataset="photos", source="tfrecord", data_dir=str(tmp_path / "rec"), image_size=8)
    task2, train2, test2 = data.load_training_data(records)
    assert (task2.target_label, task2.label_classes, len(train2)) == ("label", {"label": 2}, 8)
    np.testing.assert_array_equal(test2.images, test.images)
    np.testing.assert_array_equal(test2.labels["label"], test.labels["label"])
