"""The converters for phones beside Fig. 3 (issue 32): the pairs of recipes, their verdicts, bad input."""

import pytest
from conftest import assert_one_error_line, run_binary

from dapter_tf import DapterError
from dapter_tf.analysis import forms, recipe_search


def test_each_pair_differs_only_in_the_architecture():
    fig3, patches, fig3_code, encoder = forms.pair_recipes(["patches", "block"], 32, 64)
    assert (fig3.name, patches.name, fig3_code.name, encoder.name) == (
        "fig3",
        "fig3_patches",
        "fig3_b32",
        "encoder_b32",
    )
    assert fig3.overrides == {"architecture": "fig3"}
    assert patches.overrides == {"architecture": "fig3_patches", "filters": (48, 96, 192), "patch": 4}
    # The block pair is dapter-protect's wide rung, at the base config's epochs, on either architecture.
    rung = {r.name: r for r in recipe_search.build_ladder(64)}["b32_wide"].recipe.overrides
    assert encoder.overrides == {k: v for k, v in rung.items() if k != "epochs"}
    assert fig3_code.overrides == {**encoder.overrides, "architecture": "fig3"}
    assert encoder.overrides["architecture"] == "block_encoder" and encoder.overrides["output_block"] == 32


def test_the_patch_form_at_other_lambdas_follows_its_pair():
    recipes = forms.pair_recipes(["patches", "block"], 32, 64, form_lambdas=[0.5, 0.25])
    assert [r.name for r in recipes] == [
        "fig3",
        "fig3_patches",
        "fig3_patches_lambda0.5",
        "fig3_patches_lambda0.25",
        "fig3_b32",
        "encoder_b32",
    ]
    # Only lambda differs from the patch form at the base config's lambda.
    assert recipes[2].overrides == {**recipes[1].overrides, "lambda_": 0.5}
    assert recipes[3].overrides == {**recipes[1].overrides, "lambda_": 0.25}


def test_the_patch_form_on_other_patches_has_its_own_name_and_folders():
    fig3, patches, lower = forms.pair_recipes(["patches"], 32, 32, form_lambdas=[0.5], lambda_=0.9, patch=2)
    assert [r.name for r in (fig3, patches, lower)] == ["fig3", "fig3_patches2", "fig3_patches2_lambda0.5"]
    assert fig3.overrides == {"architecture": "fig3"}
    assert patches.overrides == {"architecture": "fig3_patches", "filters": (48, 96, 192), "patch": 2}
    assert lower.overrides == {**patches.overrides, "lambda_": 0.5}


def test_the_split_form_shares_fig3_with_the_patch_form():
    recipes = forms.pair_recipes(["split", "patches"], 32, 32, form_lambdas=[0.95], lambda_=0.9)
    assert [r.name for r in recipes] == [
        "fig3",
        "fig3_patches",
        "fig3_patches_lambda0.95",
        "fig3_split",
        "fig3_split_lambda0.95",
    ]
    assert recipes[3].overrides == {"architecture": "fig3_split", "filters": (48, 96, 192), "patch": 4}
    assert recipes[4].overrides == {**recipes[3].overrides, "lambda_": 0.95}
    assert forms.pair_recipes(["split"], 32, 32, patch=2)[1].name == "fig3_split2"


@pytest.mark.parametrize(
    "pairs, block, form_lambdas, message",
    [
        (["unet"], 32, [], "--pairs takes any of patches, split, block, got unet"),
        ([], 32, [], "--pairs takes any of patches, split, block, got nothing"),
        (["block"], 2, [], "--block=2 is not a code of dapter-protect's ladder for 32x32 images"),
        (
            ["block"],
            32,
            [0.5],
            "--form_lambdas trains the patch forms at other lambdas: it needs --pairs=patches or split",
        ),
        (["patches"], 32, [0.5, 0.5], "--form_lambdas repeats a value: 0.5,0.5"),
    ],
)
def test_bad_pairs_are_refused(pairs, block, form_lambdas, message):
    with pytest.raises(DapterError) as error:
        forms.pair_recipes(pairs, block, 32, form_lambdas)
    assert str(error.value) == message


def _point(name, architecture, drop, error, ssim, lambda_=0.9, entropy_ratio=0.25):
    return {
        "name": name,
        "recipe": {"architecture": architecture},
        "lambda": lambda_,
        "entropy_ratio": entropy_ratio,
        "accuracy_drop_points": drop,
        "accuracy_drop_error_points": error,
        "max_ssim": ssim,
        "ssim_mean_image": 0.120,
    }


def test_verdicts_by_hand():
    rows = forms.compare_forms(
        [
            _point("fig3", "fig3", 2.0, 0.3, 0.300),
            _point("fig3_patches", "fig3_patches", 2.8, 0.4, 0.310),  # 0.8 more lost: holds; stronger attacker.
            # The same form at a lower lambda, judged against the same Fig. 3: 1.2 more lost, weaker attacker.
            _point("fig3_patches_lambda0.5", "fig3_patches", 3.2, 0.4, 0.290, lambda_=0.5, entropy_ratio=0.3),
            _point("fig3_b32", "fig3", 3.0, 0.3, 0.130, lambda_=0.5),
            _point("encoder_b32", "block_encoder", 4.5, 0.4, 0.125, lambda_=0.5),  # 1.5 more: missed; weaker.
        ]
    )
    assert [(r["fig3"], r["form"], r["accuracy_holds"], r["ssim_holds"]) for r in rows] == [
        ("fig3", "fig3_patches", True, False),
        ("fig3", "fig3_patches_lambda0.5", False, True),
        ("fig3_b32", "encoder_b32", False, True),
    ]
    assert rows[0]["extra_drop_points"] == pytest.approx(0.8)
    assert rows[0]["extra_drop_error_points"] == pytest.approx(0.5)  # sqrt(0.3^2 + 0.4^2).
    table = forms.forms_table(rows)
    assert "| fig3 | fig3_patches | 0.9 / 0.9 | 25.0% / 25.0% | +0.80 ± 0.50: holds | 0.300 | 0.310: missed |" in table
    assert (
        "| fig3 | fig3_patches_lambda0.5 | 0.9 / 0.5 | 25.0% / 30.0% | +1.20 ± 0.50: missed | 0.300 | 0.290: holds |"
        in table
    )
    assert (
        "| fig3_b32 | encoder_b32 | 0.5 / 0.5 | 25.0% / 25.0% | +1.50 ± 0.50: missed | 0.130 | 0.125: holds |" in table
    )


def test_bench_refuses_an_unknown_pair_in_one_line_writing_nothing(tmp_path):
    workdir = tmp_path / "forms"
    proc = run_binary("bench.bench_efficient_forms", "--target=t.keras", "--pairs=unet", f"--workdir={workdir}")
    assert_one_error_line(proc, "--pairs takes any of patches, split, block, got unet")
    assert not workdir.exists()


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--form_lambdas=half", "--form_lambdas must be numbers, got half"),
        ("--form_lambdas=0.5,0.9", "--form_lambdas=0.9 repeats --lambda_: the pair trains the patch form at it"),
        ("--form_lambdas=1.5", "recipe fig3_patches_lambda1.5: lambda must lie in [0, 1] (Eq. 1), got 1.5"),
        ("--patch=3", "recipe fig3_patches3: patch must be 2, 4, 8 or 16 pixels (a power of two; for 1 use"),
    ],
)
def test_bench_refuses_bad_form_lambdas_or_patch_in_one_line_writing_nothing(tmp_path, flag, message):
    workdir = tmp_path / "forms"
    proc = run_binary("bench.bench_efficient_forms", "--target=t.keras", flag, f"--workdir={workdir}")
    assert_one_error_line(proc, message)
    assert not workdir.exists()
