"""The converters for phones beside Fig. 3 (issue 32): the pairs of recipes, their verdicts, bad input."""

import pytest
from conftest import assert_one_error_line, run_binary

from dapter_tf import DapterError
from dapter_tf.analysis import forms, recipe_search


def test_each_pair_differs_only_in_the_architecture():
    fig3, patches, fig3_code, encoder = forms.pair_recipes(["patches", "block"], 32, 64)
    assert (fig3.name, patches.name, fig3_code.name, encoder.name) == ("fig3", "fig3_patches", "fig3_b32", "encoder_b32")
    assert fig3.overrides == {"architecture": "fig3"}
    assert patches.overrides == {"architecture": "fig3_patches", "filters": (48, 96, 192)}
    # The block pair is dapter-protect's wide rung, at the base config's epochs, on either architecture.
    rung = {r.name: r for r in recipe_search.build_ladder(64)}["b32_wide"].recipe.overrides
    assert encoder.overrides == {k: v for k, v in rung.items() if k != "epochs"}
    assert fig3_code.overrides == {**encoder.overrides, "architecture": "fig3"}
    assert encoder.overrides["architecture"] == "block_encoder" and encoder.overrides["output_block"] == 32


@pytest.mark.parametrize(
    "pairs, block, message",
    [
        (["unet"], 32, "--pairs takes any of patches, block, got unet"),
        ([], 32, "--pairs takes any of patches, block, got nothing"),
        (["block"], 2, "--block=2 is not a code of dapter-protect's ladder for 32x32 images"),
    ],
)
def test_bad_pairs_are_refused(pairs, block, message):
    with pytest.raises(DapterError) as error:
        forms.pair_recipes(pairs, block, 32)
    assert str(error.value) == message


def _point(name, drop, error, ssim):
    return {
        "name": name,
        "accuracy_drop_points": drop,
        "accuracy_drop_error_points": error,
        "max_ssim": ssim,
        "ssim_mean_image": 0.120,
    }


def test_verdicts_by_hand():
    rows = forms.compare_forms(
        [
            _point("fig3", 2.0, 0.3, 0.300),
            _point("fig3_patches", 2.8, 0.4, 0.310),  # 0.8 more lost: holds; a stronger attacker: missed.
            _point("fig3_b32", 3.0, 0.3, 0.130),
            _point("encoder_b32", 4.5, 0.4, 0.125),  # 1.5 more lost: missed; a weaker attacker: holds.
        ]
    )
    assert [(r["form"], r["accuracy_holds"], r["ssim_holds"]) for r in rows] == [
        ("fig3_patches", True, False),
        ("encoder_b32", False, True),
    ]
    assert rows[0]["extra_drop_points"] == pytest.approx(0.8)
    assert rows[0]["extra_drop_error_points"] == pytest.approx(0.5)  # sqrt(0.3^2 + 0.4^2).
    table = forms.forms_table(rows)
    assert "| fig3 | fig3_patches | +0.80 ± 0.50: holds | 0.300 | 0.310: missed | 0.120 |" in table
    assert "| fig3_b32 | encoder_b32 | +1.50 ± 0.50: missed | 0.130 | 0.125: holds | 0.120 |" in table


def test_bench_refuses_an_unknown_pair_in_one_line_writing_nothing(tmp_path):
    workdir = tmp_path / "forms"
    proc = run_binary("bench.bench_efficient_forms", "--target=t.keras", "--pairs=unet", f"--workdir={workdir}")
    assert_one_error_line(proc, "--pairs takes any of patches, block, got unet")
    assert not workdir.exists()
