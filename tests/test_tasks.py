"""Tasks and their datasets: CIFAR-10 and its stand-in hierarchy, CelebA, LFW, ImageNet folders.

Real samples come from ../shared/data (skipped, saying why, where it is absent). The official
on-disk layouts are read from small fixture trees written here in those layouts, with real
pixels: CelebA's img_align_celeba/ + list_attr_celeba.txt (-1/1, with list_eval_partition.txt),
LFW's lfw-deepfunneled/<Person>/ + male_names.txt / female_names.txt, and ImageNet's
train/<wnid>/, val/<wnid>/.
"""

import csv
import os

import numpy as np
import pytest
from conftest import SHARED_DATA, require_shared
from PIL import Image

from dapter_tf import DapterError, data
from dapter_tf.data import folders
from dapter_tf.data.tasks import CELEBA_ATTRIBUTES, TASKS, get_task

CELEBA = SHARED_DATA / "celeba"
LFW_RGB = SHARED_DATA / "lfw" / "rgb150"
LFW_GRAY = SHARED_DATA / "lfw" / "gray250_min20"


def _row(images, name):
    hits = np.flatnonzero(images.names == name)
    assert len(hits) == 1, f"{name} not found once"
    return int(hits[0])


def test_every_task_has_its_target_among_its_labels_and_attacks_apart():
    for task in TASKS.values():
        assert task.target_label in task.label_classes
        assert task.target_label not in task.attack_labels
        assert set(task.attack_labels) <= set(task.label_classes)


def test_cifar2_10_stand_in_derives_vehicle_animal_and_says_what_it_stands_in_for(embedded):
    task = get_task("cifar2_10")
    assert task.stand_in_for == "Cifar20:100" and "STAND-IN" in task.description
    _, train, _ = data.load_data(data.DataConfig(dataset="cifar2_10", max_train=200, max_test=50))
    label, superclass = train.labels["label"], train.labels["superclass"]
    # airplane 0, automobile 1, ship 8, truck 9 are vehicles (0); the six animals are 1.
    np.testing.assert_array_equal(superclass, np.isin(label, [2, 3, 4, 5, 6, 7]).astype(int))


def test_celeba_with_another_target_makes_the_other_39_attacks():
    task = get_task("celeba", target_label="Eyeglasses")
    assert task.target_label == "Eyeglasses" and task.num_classes == 2
    assert len(task.attack_labels) == 39 and "Male" in task.attack_labels and "Eyeglasses" not in task.attack_labels
    with pytest.raises(DapterError, match="task 'celeba' has no label 'Beard'"):
        get_task("celeba", target_label="Beard")


def test_prepare_images_crops_the_centre_square_and_makes_gray_rgb():
    task = get_task("celeba", image_size=4)
    tall = np.zeros((12, 8, 3), np.uint8)
    tall[2:10] = 200  # The centre 8x8 square is bright, the 2-pixel bands above and below dark.
    out = task.prepare_images([tall])
    assert out.shape == (1, 4, 4, 3) and (out == 200).all()
    gray = task.prepare_images(np.full((1, 4, 4, 1), 77, np.uint8))
    assert gray.shape == (1, 4, 4, 3) and (gray == 77).all()


def test_shared_celeba_rows_match_attributes_csv():
    require_shared(CELEBA)
    config = data.DataConfig(dataset="celeba", source="folder", data_dir=str(CELEBA), image_size=32)
    task, train, test = data.load_data(config)
    assert len(train) == 8000 and len(test) == 2000 and train.images.shape[1:] == (32, 32, 3)
    assert task.target_label == "Male" and len(task.attack_labels) == 39
    rows = {r["image_id"]: r for r in csv.DictReader(open(CELEBA / "attributes.csv"))}
    for name in ("000001.jpg", "000003.jpg", "009999.jpg"):
        images = train if name in set(train.names) else test
        i = _row(images, name)
        for attribute in CELEBA_ATTRIBUTES:
            assert images.labels[attribute][i] == int(rows[name][attribute]), (name, attribute)
    # Known rows: 000001 is a young smiling woman without glasses; 000003 is a man.
    both = {n: (s, i) for s in (train, test) for i, n in enumerate(s.names)}
    s, i = both["000001.jpg"]
    assert (s.labels["Male"][i], s.labels["Smiling"][i], s.labels["Eyeglasses"][i], s.labels["Young"][i]) == (
        0,
        1,
        0,
        1,
    )
    s, i = both["000003.jpg"]
    assert s.labels["Male"][i] == 1
    # Pixels: the centre 89x89 of the 89x109 JPEG, box-resized to 32x32, as prepare_images does.
    with Image.open(CELEBA / "images" / "000001.jpg") as original:
        expected = get_task("celeba", image_size=32).prepare_images([np.asarray(original)])[0]
    s, i = both["000001.jpg"]
    np.testing.assert_array_equal(s.images[i], expected)
    # Attribute frequencies of the README (Male 0.42) hold on the union of the splits.
    male = np.concatenate([train.labels["Male"], test.labels["Male"]])
    assert abs(male.mean() - 0.42) < 0.01


def test_shared_celeba_split_is_fixed_whatever_the_seed():
    require_shared(CELEBA)
    task = get_task("celeba", image_size=8)
    a = folders.read_folder(task, str(CELEBA), "test", max_images=0, seed=0)
    b = folders.read_folder(task, str(CELEBA), "test", max_images=0, seed=5)
    train = folders.read_folder(task, str(CELEBA), "train", max_images=0, seed=0)
    assert set(a.names) == set(b.names) and not set(a.names) & set(train.names)


@pytest.mark.parametrize("folder, people", [(LFW_RGB, 4281), (LFW_GRAY, 62)], ids=["rgb150", "gray250_min20"])
def test_shared_lfw_layouts_load_gender_and_identity(folder, people):
    require_shared(folder)
    config = data.DataConfig(dataset="lfw", source="folder", data_dir=str(folder), image_size=32, max_train=600)
    task, train, test = data.load_data(config)
    assert task.target_label == "gender" and task.attack_labels == ("identity",)
    assert task.label_classes["identity"] <= people and train.images.shape[1:] == (32, 32, 3)
    rows = {r["image"]: r for r in csv.DictReader(open(folder / "labels.csv"))}
    for images in (train, test):
        for i, name in enumerate(images.names[:50]):
            assert images.labels["gender"][i] == (rows[name]["gender"] == "M")
            assert images.labels["identity"][i] == int(rows[name]["person_id"])


def test_shared_lfw_known_people_and_gray_made_rgb():
    require_shared(LFW_GRAY)
    task = get_task("lfw", image_size=32)
    images = folders.read_folder(task, str(LFW_GRAY), "train")
    images = (
        images if "Serena_Williams_0001.jpg" in set(images.names) else folders.read_folder(task, str(LFW_GRAY), "test")
    )
    i = _row(images, "Serena_Williams_0001.jpg")
    assert images.labels["gender"][i] == 0 and images.labels["identity"][i] == 53
    # Grayscale frames come out as three equal channels, cut to the rgb150 face window first.
    np.testing.assert_array_equal(images.images[i][..., 0], images.images[i][..., 2])
    with Image.open(LFW_GRAY / "images" / "Serena_Williams_0001.jpg") as frame:
        face = frame.crop(folders.LFW_FACE_BOX)
        np.testing.assert_array_equal(images.images[i], task.prepare_images([face])[0])


def test_unknown_gender_is_left_out():
    require_shared(LFW_RGB)
    task = get_task("lfw", image_size=8)
    names = set()
    for split in ("train", "test"):
        names |= set(folders.read_folder(task, str(LFW_RGB), split).names)
    assert len(names) == 7701 - 5 and "Elizabeth_Hill_0001.jpg" not in names


@pytest.fixture(scope="module")
def faces(embedded):
    """Real pixels for the fixture trees: CIFAR-10 images blown up to CelebA's and LFW's frames."""
    return embedded[1].images[:12]


def _save(path, pixels, size):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).resize(size).save(path)


def test_official_celeba_layout_with_partition(tmp_path, faces):
    root = tmp_path / "celeba"
    names = [f"{i:06d}.jpg" for i in range(1, 7)]
    values = np.where(np.arange(6 * 40).reshape(6, 40) % 3 == 0, 1, -1)
    for name, pixels in zip(names, faces):
        _save(str(root / "img_align_celeba" / name), pixels, (178, 218))
    lines = ["6", " ".join(CELEBA_ATTRIBUTES)] + [
        f"{n} " + " ".join(f"{v:2d}" for v in row) for n, row in zip(names, values)
    ]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, [0, 0, 0, 0, 1, 2])))
    config = data.DataConfig(dataset="celeba", source="folder", data_dir=str(root), target_label="Bald", image_size=16)
    task, train, test = data.load_data(config)
    assert sorted(train.names) == names[:4] and sorted(test.names) == names[4:]
    bald = CELEBA_ATTRIBUTES.index("Bald")
    for images in (train, test):
        for i, name in enumerate(images.names):
            row = names.index(name)
            assert images.labels["Bald"][i] == (values[row, bald] == 1)
            assert images.labels["5_o_Clock_Shadow"][i] == (values[row, 0] == 1)
    assert train.images.shape == (4, 16, 16, 3)


def test_official_lfw_layout(tmp_path, faces):
    root = tmp_path / "lfw"
    files = {"Ann_Smith": 3, "Bob_Jones": 4, "Cy_Both": 1}
    k = 0
    for person, count in files.items():
        for n in range(1, count + 1):
            _save(str(root / "lfw-deepfunneled" / person / f"{person}_{n:04d}.jpg"), faces[k], (250, 250))
            k += 1
    (root / "female_names.txt").write_text(
        "".join(f"Ann_Smith_{n:04d}.jpg\n" for n in range(1, 4)) + "Cy_Both_0001.jpg\n"
    )
    (root / "male_names.txt").write_text(
        "".join(f"Bob_Jones_{n:04d}.jpg\n" for n in range(1, 5)) + "Cy_Both_0001.jpg\n"
    )
    task = get_task("lfw", image_size=16)
    images = [folders.read_folder(task, str(root), s) for s in ("train", "test")]
    names = np.concatenate([i.names for i in images])
    gender = np.concatenate([i.labels["gender"] for i in images])
    identity = np.concatenate([i.labels["identity"] for i in images])
    assert len(names) == 7 and "Cy_Both_0001.jpg" not in names  # In both lists: unknown gender.
    for name, g, person in zip(names, gender, identity):
        assert g == name.startswith("Bob") and person == (1 if name.startswith("Bob") else 0)


def test_imagenet_folder_with_the_shipped_synsets(tmp_path, faces):
    wnids, coarse, coarse_names, fine_names = folders.imagenet_synsets("imagenet8_32")
    assert len(wnids) == 32 and len(set(wnids)) == 32 and len(coarse_names) == 8
    assert np.bincount(coarse).tolist() == [4] * 8 and fine_names[0] == "Chihuahua"
    for split, count in (("train", 2), ("val", 1)):
        for i, wnid in enumerate(wnids):
            for n in range(count):
                _save(str(tmp_path / split / wnid / f"{wnid}_{n}.JPEG"), faces[i % 12], (40, 30))
    config = data.DataConfig(dataset="imagenet8_32", source="folder", data_dir=str(tmp_path), image_size=32)
    task, train, test = data.load_data(config)
    assert len(train) == 64 and len(test) == 32 and task.num_classes == 8
    for i, name in enumerate(train.names):
        fine = wnids.index(name.split("_")[0])
        assert train.labels["label"][i] == fine and train.labels["coarse_label"][i] == coarse[fine]
    os.rename(tmp_path / "val" / wnids[5], tmp_path / "val" / "n00000000")
    with pytest.raises(DapterError, match=f"missing synset folder\\(s\\) {wnids[5]} of task 'imagenet8_32'"):
        data.load_data(config)


def test_imagenet10_ships_ten_distinct_synsets():
    wnids, _, _, names = folders.imagenet_synsets("imagenet10")
    assert len(set(wnids)) == 10 and names[0] == "tench"


@pytest.mark.parametrize(
    "dataset, files, message",
    [
        ("celeba", {}, "not a CelebA folder"),
        ("lfw", {}, "not an LFW folder"),
        ("imagenet10", {}, "not an ImageNet-style folder"),
        ("celeba", {"attributes.csv": "image_id,Smile\n000001.jpg,1\n"}, "not CelebA's 40 attributes"),
    ],
)
def test_unrecognised_folders_say_what_they_expected(tmp_path, dataset, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(DapterError, match=message):
        data.load_data(data.DataConfig(dataset=dataset, source="folder", data_dir=str(tmp_path)))


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DapterError, match="dataset folder not found"):
        data.load_data(data.DataConfig(dataset="celeba", source="folder", data_dir=str(tmp_path / "nope")))
