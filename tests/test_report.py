"""The run report, by hand: the paper's thresholds (met, missed, or within noise), the reconstruction
attacker beside the mean image, and the labelled grid."""

import dataclasses
import json
import types

import numpy as np
import PIL.Image
import pytest

from dapter_tf.analysis import report


def _results(drop, low, high):
    return {"accuracy_drop_points": drop, "accuracy_drop_low_points": low, "accuracy_drop_high_points": high}


@pytest.mark.parametrize(
    "drop, low, high, verdict",
    [
        (1.0, 0.2, 1.8, "met"),
        (5.0, 4.1, 5.9, "missed"),
        (2.4, 1.2, 3.6, "met by the point figure, but its 95 % interval [1.20, 3.60] spans 3: within noise"),
        (3.4, 2.2, 4.6, "missed by the point figure, but its 95 % interval [2.20, 4.60] spans 3: within noise"),
    ],
)
def test_accuracy_verdict_by_hand(drop, low, high, verdict):
    assert report.accuracy_verdict(_results(drop, low, high)) == verdict


def test_grid_picks_one_image_per_class_then_the_next_ones():
    # Classes 0, 1, 2, 3 first appear at indices 3, 1, 5, 0.
    labels = [3, 1, 1, 0, 3, 2]
    assert report.grid_picks(labels, 3).tolist() == [3, 1, 5]
    # Four classes for five columns: one of each, then the first image not picked yet (index 2).
    assert report.grid_picks(labels, 5).tolist() == [3, 1, 5, 0, 2]
    assert report.grid_picks(labels, 10).tolist() == [3, 1, 5, 0, 2, 4]


def test_labelled_grid_names_rows_and_columns_and_keeps_its_size(tmp_path):
    from dapter_tf import figures

    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8) for _ in range(2)]
    fig = figures.labelled_grid(rows, ["originals", "converted"], ["cat", "dog", "ship"], title="line 1\nline 2")
    # Two rows of three images, row by row; each drawn pixel for pixel.
    assert len(fig.axes) == 6
    assert [ax.get_ylabel() for ax in fig.axes[::3]] == ["originals", "converted"]
    assert [ax.get_title() for ax in fig.axes[:3]] == ["cat", "dog", "ship"]
    assert [ax.get_title() for ax in fig.axes[3:]] == ["", "", ""]
    assert fig._suptitle.get_text() == "line 1\nline 2"
    np.testing.assert_array_equal(fig.axes[4].images[0].get_array(), rows[1][1])
    # By hand: 1.5 in of row labels + 3 cells of 1 in + 0.1 in margin = 4.6 in wide; 0.1 in margin +
    # 2 title lines of 0.25 in + 0.3 in of column labels + 2 cells + 0.1 in margin = 3.0 in high; at 120 dpi.
    path = str(tmp_path / "grid.png")
    figures.save_figure(fig, path, tight=False)
    assert np.asarray(PIL.Image.open(path)).shape[:2] == (360, 552)


@dataclasses.dataclass(frozen=True)
class _Data:
    dataset: str = "cifar10"
    source: str = "embedded"


@dataclasses.dataclass(frozen=True)
class _Config:
    target_path: str = "demo_out/target/target.keras"
    lambda_: float = 0.9
    epochs: int = 1
    data: _Data = _Data()


def _run_results():
    return {
        "images": 4,
        "accuracy_original": 0.5,
        "accuracy_converted": 0.25,
        "accuracy_drop_points": 25.0,
        "entropy_original": 20.0,
        "entropy_converted": 5.0,
        "entropy_ratio": 0.25,
        "png_bytes_original": 4000,
        "png_bytes_converted": 1000,
        "bandwidth_ratio": 0.25,
        "bandwidth_saving": 4.0,
    }


def _attack(ssim, mean_image):
    return dict(
        ssim=ssim, psnr=20.0, ssim_converted=0.3, psnr_converted=12.0, images_train=8, images_test=4, epochs=2,
        grid="attack/grid.png", lambda_=0.9, ssim_mean_image=mean_image, psnr_mean_image=12.1,
        attack_type="reconstruction", attacker="symmetric", parameters=1000,
    )  # fmt: skip


@pytest.mark.parametrize(
    "ssim, mean_image, restored, words",
    [
        (0.80, 0.12, True, "the converted photos can be restored.**"),
        # dapter-protect's bar is 0.05 above the mean image: within it, not restored; beyond it, restored,
        # in part below an SSIM of 0.5.
        (0.16, 0.12, False, "this short attack did not restore the photos"),
        (0.18, 0.12, True, "the converted photos can be partly restored.**"),
        (0.49, 0.12, True, "the converted photos can be partly restored.**"),
        (0.50, 0.12, True, "the converted photos can be restored.**"),
    ],
)
def test_report_gives_the_attacker_beside_the_mean_image_and_what_it_means(
    tmp_path, ssim, mean_image, restored, words
):
    rng = np.random.default_rng(0)
    originals, converted, reconstructed = (rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8) for _ in range(3))
    task = types.SimpleNamespace(
        description="tiny", stand_in_for=None, target_label="label", class_names=("cat", "dog", "ship")
    )
    attack = _attack(ssim, mean_image)
    report.write_report(
        str(tmp_path), _Config(), _run_results(), originals, converted, task=task,
        labels=np.array([2, 0, 1, 7]), attack=attack, reconstructed=reconstructed,
    )  # fmt: skip
    assert report.attack_restores(attack) == restored
    text = (tmp_path / "report.md").read_text()
    assert f"| the attacker's reconstructions | {ssim:.4f} |" in text
    assert f"{mean_image:.4f}" in text and words in text
    assert "dapter-protect --target=demo_out/target/target.keras --dataset=cifar10 --source=embedded" in text
    assert ("L_dap alone does not protect them" in text) == restored
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["attack"]["ssim"] == ssim and saved["attack"]["restored"] == restored
    assert saved["attack"]["ssim_mean_image"] == mean_image
    # One column per image, named by its class (a label the task has no name for by its number).
    assert saved["grid"]["columns"] == ["ship", "cat", "dog", "class 7"]
    assert saved["grid"]["rows"] == ["originals", "converted (what is sent)", "reconstructed by the attacker"]
    assert (tmp_path / "grid.png").is_file()


def test_report_without_an_attack_has_a_grid_of_two_rows(tmp_path):
    rng = np.random.default_rng(0)
    originals, converted = (rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8) for _ in range(2))
    report.write_report(str(tmp_path), _Config(), _run_results(), originals, converted)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["attack"] is None
    assert saved["grid"] == {"path": "grid.png", "rows": ["originals", "converted (what is sent)"], "columns": []}
    assert "## Can the converted photos be restored?" not in (tmp_path / "report.md").read_text()
    # The first GRID_IMAGES images, one a column: 1.5 + 10 x 1 + 0.1 in = 1392 pixels wide at 120 dpi.
    assert PIL.Image.open(tmp_path / "grid.png").size[0] == 1392
