"""The protection frontier: recipes, and converters trained and attacked per recipe, resumable."""

import json

import keras
import pytest
from conftest import assert_one_error_line, run_binary, tiny_dapter_config

from dapter_tf import DapterError
from dapter_tf.analysis import protection
from dapter_tf.models import targets


def test_recipes_parse_into_config_fields_and_families():
    recipe = protection.parse_recipe("both: lambda_=0.5 output_block=32 adversary_weight=2 cosine_decay=true")
    assert recipe.name == "both" and recipe.family == "both"
    config = recipe.apply(tiny_dapter_config("t.keras"))
    assert (config.lambda_, config.output_block, config.cosine_decay) == (0.5, 32, True)
    assert config.adversary.weight == 2.0 and config.adversary.decoders == 2  # The rest: the defaults.
    assert protection.parse_recipe("plain:").family == "L_dap"
    assert protection.parse_recipe("a: adversary_weight=1").family == "adversarial"
    assert protection.parse_recipe("c: class_code=target acc_labels=target").family == "class code"
    assert protection.parse_recipe("c: output_block=8 filters=8/16/16").apply(tiny_dapter_config("t")).filters == (
        8,
        16,
        16,
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("no colon here", "a recipe is 'name: field=value ...'"),
        ("bad name: lambda_=0.5", "a recipe is 'name: field=value ...'"),
        ("x: lambda=0.5", "'lambda=0.5' is not field=value with a field of: lambda_, epochs"),
        ("x: epochs=many", "epochs='many' is not a valid value"),
        ("x: cosine_decay=maybe", "cosine_decay='maybe' is not a valid value"),
    ],
)
def test_bad_recipes_are_named(text, message):
    with pytest.raises(DapterError, match=message.replace("(", "\\(").replace(")", "\\)")):
        protection.parse_recipe(text)


def test_recipes_are_checked_against_the_config_before_anything_trains():
    base = tiny_dapter_config("t.keras")
    with pytest.raises(DapterError, match="recipe big: output_block must be a power of two"):
        protection.check_recipes([protection.parse_recipe("big: output_block=3")], base)
    with pytest.raises(DapterError, match="distinct names"):
        protection.check_recipes([protection.parse_recipe("a:"), protection.parse_recipe("a: lambda_=0.1")], base)


def test_the_frontier_binary_trains_attacks_and_resumes_per_recipe(tmp_path):
    keras.utils.set_random_seed(0)
    target = str(tmp_path / "target.keras")
    targets.build_target("resnet18", (32, 32, 3), 2, width=4).save(target)
    args = [
        "--dataset=cifar2_10",
        f"--target={target}",
        "--max_train=128",
        "--max_test=64",
        "--epochs=1",
        "--batch_size=32",
        "--filters=4,8,8",
        "--recipe=ldap: lambda_=0.9",
        "--recipe=both: output_block=32 adversary_weight=1 adversary_filters=4/8",
        "--suite_reconstruction=symmetric",
        "--suite_symmetric_epochs=1",
        "--suite_labelling=scratch",
        "--suite_pretrain_epochs=1",
        "--suite_attack_width=4",
        f"--workdir={tmp_path / 'frontier'}",
    ]
    proc = run_binary("experiments.protection_frontier", *args, timeout=900)
    assert proc.returncode == 0, proc.stderr
    frontier = json.loads((tmp_path / "frontier" / "frontier.json").read_text())
    points = {p["name"]: p for p in frontier["points"]}
    assert points["both"]["family"] == "both" and points["both"]["output_block"] == 32
    assert points["ldap"]["max_label_gap_points"] is not None and points["ldap"]["max_ssim"] is not None
    for name in ("frontier.md", "frontier.png"):
        assert (tmp_path / "frontier" / name).is_file()
    assert "| both | both | 0.9 | 32 | 1 |" in (tmp_path / "frontier" / "frontier.md").read_text()
    # A rerun reads every finished recipe back; a recipe changed under its name is refused.
    again = run_binary("experiments.protection_frontier", *args, timeout=900)
    assert again.returncode == 0 and again.stdout.count("done before") == 2
    changed = [a.replace("lambda_=0.9", "lambda_=0.5") for a in args]
    assert_one_error_line(run_binary("experiments.protection_frontier", *changed), "holds a run with another config")
    # So is a finished recipe whose suite was measured by other attackers than the frontier's own.
    stronger = [a.replace("--suite_symmetric_epochs=1", "--suite_symmetric_epochs=2") for a in args]
    assert_one_error_line(run_binary("experiments.protection_frontier", *stronger), "measured by another attack suite")
