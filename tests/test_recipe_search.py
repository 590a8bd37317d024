"""dapter-protect's recipe search: the ladder, the stopping rule by hand, and a tiny search that stops and resumes."""

import json

import keras
import pytest
from conftest import tiny_dapter_config

from dapter_tf.analysis import protection
from dapter_tf.analysis import recipe_search as rs
from dapter_tf.records import files

LEAKED, MISSED = rs.LEAKED, rs.MISSED_ACCURACY


def names(ladder):
    return [r.name for r in ladder]


def test_the_ladder_goes_from_the_coarsest_code_to_l_dap_and_the_class_code_only_when_allowed():
    assert names(rs.build_ladder(32)) == [
        "b32", "b32_wide", "b16", "b16_wide", "b8", "b8_wide", "b4", "b4_wide", "ldap_0.9"
    ]  # fmt: skip
    # 64x64 photos: one colour per image first; the class code last, only when the provider allows it.
    ladder = rs.build_ladder(64, allow_model_on_device=True)
    assert names(ladder)[:3] == ["b64", "b64_wide", "b32"] and names(ladder)[-1] == "class_code"
    assert [r.colours for r in ladder[:3]] == [1, 1, 4]
    assert ladder[1].recipe.overrides["epochs"] == 30 and ladder[1].recipe.overrides["filters"] == rs.WIDE_FILTERS
    assert ladder[0].recipe.overrides["architecture"] == "block_encoder"


def test_the_wide_rungs_take_other_channels_and_candidates_keep_only_the_named_rungs_in_ladder_order():
    ladder = rs.build_ladder(32, wide_filters=(64, 128, 256), candidates=["b8", "b16_wide"])
    assert names(ladder) == ["b16_wide", "b8"]
    assert [r.recipe.overrides["filters"] for r in ladder] == [(64, 128, 256), (16, 32, 64)]
    # The budget's estimate: 3x the epochs times 256 / 64 channels at the widest stage (the default's 9).
    assert (ladder[0].cost, rs.build_ladder(32)[1].cost) == (12.0, 9.0)
    with pytest.raises(Exception, match=r"^no candidate named b64, b3 at 32x32; the ladder's: b32, b32_wide, b16, "):
        rs.build_ladder(32, candidates=["b16", "b64", "b3"])
    with pytest.raises(Exception, match=r"^the wide rungs need positive channel counts, got \(48, 0, 192\)$"):
        rs.build_ladder(32, wide_filters=(48, 0, 192))


def test_dapter_protect_help_names_the_ladder_flags_with_the_ladder_s_defaults():
    from conftest import run_binary

    proc = run_binary("experiments.protect", "--helpshort")  # absl exits 1 after help.
    assert "--wide_filters: The block encoder's channels in the wide rungs" in proc.stdout
    assert f"(default: '{','.join(map(str, rs.WIDE_FILTERS))}')" in proc.stdout
    assert "--candidates: Try only these candidates of the ladder" in proc.stdout


def test_every_field_of_every_rung_reaches_the_config_it_trains(tiny_target_path):
    # A field the recipe dropped would train another converter than the ladder names (L_head once was).
    base = tiny_dapter_config(tiny_target_path)
    for rung in rs.build_ladder(64, allow_model_on_device=True):
        config = rung.recipe.apply(base)
        assert {k: getattr(config, k) for k in rung.recipe.overrides} == rung.recipe.overrides, rung.name
    assert rs.build_ladder(64)[0].recipe.apply(base).task_head == rs.TASK_HEAD_WEIGHT > 0
    with pytest.raises(Exception, match=r"recipe 'odd' sets no_such_field, which no recipe may set"):
        protection.Recipe("odd", {"no_such_field": 1}).apply(base)


@pytest.mark.parametrize(
    "outcomes, budget, expected",
    [
        ({}, None, ("b32", None)),
        # The accuracy missed at one colour: the same code trained wider and longer comes next.
        ({"b32": MISSED}, None, ("b32_wide", None)),
        ({"b32": MISSED, "b32_wide": MISSED}, None, ("b16", None)),
        # A code that leaks: every finer code, and L_dap, sends more of the photo; nothing is left.
        ({"b32": MISSED, "b32_wide": MISSED, "b16": LEAKED}, None, (None, rs.EXHAUSTED)),
        ({"b32": LEAKED}, None, (None, rs.EXHAUSTED)),
        ({"b32": MISSED, "b32_wide": rs.PASSED}, None, (None, rs.MET)),
        # b32_wide costs 9 units; at 20 s a unit it needs 180 s, and 100 s are left: b16 (1 unit, 20 s) fits.
        ({"b32": MISSED}, (100.0, 20.0), ("b16", None)),
        ({"b32": MISSED}, (200.0, 20.0), ("b32_wide", None)),
        # 10 s left: not even a 1-unit candidate (20 s) fits.
        ({"b32": MISSED}, (10.0, 20.0), (None, rs.BUDGET)),
        # b16 leaked: every finer code is out, and what is left (b32_wide) does not fit.
        ({"b32": MISSED, "b16": LEAKED}, (100.0, 20.0), (None, rs.BUDGET)),
        ({"b32": MISSED}, (0.0, None), (None, rs.BUDGET)),
    ],
)
def test_the_stopping_rule_by_hand(outcomes, budget, expected):
    left, per_cost = budget or (None, None)
    rung, reason = rs.next_rung(rs.build_ladder(32), outcomes, left, per_cost)
    assert (rung.name if rung else None, reason) == expected


def test_the_candidates_a_leak_passed_over_are_named():
    ladder = rs.build_ladder(64)
    assert [r.name for r in ladder][:3] == ["b64", "b64_wide", "b32"]
    skipped = rs.passed_over(ladder, {"b64": MISSED, "b64_wide": MISSED, "b32": LEAKED})
    assert skipped == {n: "b32" for n in ("b32_wide", "b16", "b16_wide", "b8", "b8_wide", "b4", "b4_wide", "ldap_0.9")}
    assert rs.passed_over(ladder, {"b64": MISSED}) == {}


def test_the_class_code_follows_a_leak_only_when_allowed():
    ladder = rs.build_ladder(32, allow_model_on_device=True)
    rung, _ = rs.next_rung(ladder, {"b32": LEAKED})
    assert rung.name == "class_code"


def test_a_candidate_that_missed_the_accuracy_bar_is_screened_but_never_confirmed():
    bars = rs.Bars(3.0, 0.05, 5.0)
    assert rs.attack_stages(3.5, bars) == rs.attack_stages(6.0, bars) == ("screen",)
    # Missed by more than the bar again: not attacked at all.
    assert rs.attack_stages(6.01, bars) == ()
    assert rs.attack_stages(3.0, bars) == rs.attack_stages(-1.0, bars) == ("screen", "suite")


def test_the_best_points_of_a_search_that_met_no_bars():
    def point(name, outcome, drop, ssim):
        screen = {"accuracy_drop_points": drop, "accuracy_drop_error_points": 0.0, "max_ssim": ssim, "ssim_mean_image": 0.25}
        return {"name": name, "outcome": outcome, "training_drop_points": drop, "screen": screen, "stage": "screen"}

    state = rs.SearchState(points=[
        point("b32", MISSED, 60.0, 0.26), point("b16", MISSED, 40.0, 0.27), point("ldap_0.9", LEAKED, 1.0, 0.9),
    ])  # fmt: skip
    best = rs.best_points(state, rs.Bars())
    # Protective: of those whose attacks held, the one that lost fewest points; usable: the only one that held accuracy.
    assert (best["protective"]["name"], best["usable"]["name"]) == ("b16", "ldap_0.9")
    assert rs.describe_point(best["protective"]) == "b16 (+40.00 ± 0.00 points lost, SSIM 0.270 (+0.020 over the mean image), by the screen)"


def test_outcomes_and_bars():
    assert rs.outcome_of(True, True) == rs.PASSED
    assert rs.outcome_of(False, None) == MISSED
    assert rs.outcome_of(True, False) == LEAKED
    assert rs.outcome_of(False, False) == rs.MISSED_BOTH
    criteria = rs.Bars(3.0, 0.05, 5.0).criteria()
    assert (criteria.max_drop_points, criteria.max_ssim, criteria.max_ssim_over_mean_image) == (3.0, None, 0.05)
    with pytest.raises(Exception, match="max_ssim_over_mean_image must lie in"):
        rs.Bars(3.0, -0.1, 5.0).criteria()


def _tiny_ladder():
    code = {"output_block": 32, "architecture": "block_encoder", "filters": (4, 4, 4)}
    return [
        rs.Rung(protection.Recipe("coarse", dict(code)), 1, 1.0),
        rs.Rung(protection.Recipe("fine", {**code, "output_block": 8}), 16, 1.0),
    ]


def test_a_tiny_search_stops_at_the_first_that_meets_the_bars_and_resumes(tmp_path):
    from dapter_tf import attacks
    from dapter_tf.data import DataConfig, load_data
    from dapter_tf.models import targets

    keras.utils.set_random_seed(0)
    data_config = DataConfig(dataset="cifar2_10", max_train=96, max_test=48)
    task, train_set, test_set = load_data(data_config)
    target = str(tmp_path / "target2.keras")
    targets.build_target("resnet18", (32, 32, 3), 2, width=4).save(target)
    base = tiny_dapter_config(target, data=data_config)
    full = attacks.SuiteSpec(
        reconstruction=(attacks.ReconstructionSpec(architecture="symmetric", epochs=1, batch_size=32),),
        labelling=attacks.AutoRecognitionSpec(pretrain_epochs=1, width=4, batch_size=32, attackers=("scratch",)),
    )
    lines = []
    # Bars any converter meets: the first candidate is screened, confirmed, chosen; the second never trains.
    generous = rs.Bars(100.0, 2.0, 100.0)
    # A killed earlier run had spent 1000 s on the first candidate: the budget counts them.
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / rs.IN_PROGRESS_FILE).write_text(json.dumps({"name": "coarse", "seconds": 1000.0}))
    state = rs.run_search(base, _tiny_ladder(), generous, full, task, train_set, test_set, str(tmp_path / "s"),
                          log=lines.append)  # fmt: skip
    assert (state.ended, state.chosen, [p["name"] for p in state.points]) == (rs.MET, "coarse", ["coarse"])
    point = state.points[0]
    assert 1000.0 < point["seconds"] < 1000.0 + 600.0 and not (tmp_path / "s" / rs.IN_PROGRESS_FILE).exists()
    assert point["stage"] == "suite" and point["screen"]["max_ssim"] is not None and point["suite"]["verdicts"]
    # A coarse code is fine-tuned on L_margin, and that converter is the one attacked.
    assert point["converter"] == str(tmp_path / "s" / "coarse" / rs.MARGIN_DIR) and "before_margin_drop_points" in point
    margin_config = json.loads((tmp_path / "s" / "coarse" / rs.MARGIN_DIR / "config.json").read_text())
    assert (margin_config["code_margin"], margin_config["epochs"]) == (rs.MARGIN_WEIGHT, rs.MARGIN_EPOCHS)
    assert margin_config["init_converter"].endswith("coarse/converter/converter.keras")
    spec = json.loads((tmp_path / "s" / "coarse" / "suite" / protection.SUITE_SPEC_FILE).read_text())
    assert spec["converter_sha256"] == files.sha256(str(tmp_path / "s" / "coarse" / rs.MARGIN_DIR / "converter.keras"))
    assert not (tmp_path / "s" / "fine").exists()
    assert (tmp_path / "s" / rs.SEARCH_FILE).is_file()
    # A rerun reads the search back: nothing trains again.
    again = rs.run_search(base, _tiny_ladder(), generous, full, task, train_set, test_set, str(tmp_path / "s"),
                          log=lines.append)  # fmt: skip
    assert again.points == state.points and not any("candidate" in line for line in lines[-2:])
    report = rs.write_report(again, generous, full, str(tmp_path / "s"), "tiny", target)
    assert "| coarse |" in open(report).read() and (tmp_path / "s" / rs.PLOT_FILE).is_file()

    # A search that met no bars and attacked nothing (its one candidate lost 50 points, more than twice
    # the bar) screens that candidate as it ends, so the best protective point is a measured one.
    unattacked = {k: v for k, v in point.items() if k not in ("screen", "suite")}
    unattacked.update(outcome=MISSED, stage="training", training_drop_points=50.0)
    (tmp_path / "c").mkdir()
    rs.SearchState(points=[unattacked]).save(str(tmp_path / "c"), {})
    strict = rs.Bars(3.0, 2.0, 100.0)
    closed = rs.run_search(base, _tiny_ladder()[:1], strict, full, task, train_set, test_set, str(tmp_path / "c"),
                           log=lines.append)  # fmt: skip
    [screened] = closed.points
    assert (closed.ended, closed.chosen, screened["stage"], screened["closing_screen"]) == (rs.EXHAUSTED, "", "screen", True)
    assert screened["outcome"] == MISSED and screened["seconds"] > point["seconds"]  # Never chosen; its time counts.
    assert rs.best_points(closed, strict)["protective"]["name"] == "coarse"
    assert any(line.startswith("== closing screen of coarse") for line in lines)
    report = rs.write_report(closed, strict, full, str(tmp_path / "c"), "tiny", target)
    assert "| missed the accuracy bar | closing screen |" in open(report).read()
    # Resumed, the search reads it back and screens nothing again.
    lines.clear()
    assert rs.run_search(base, _tiny_ladder()[:1], strict, full, task, train_set, test_set, str(tmp_path / "c"),
                         log=lines.append).points == closed.points and lines == []  # fmt: skip


def test_the_closing_screen_is_the_unattacked_candidate_that_lost_fewest_points():
    def point(name, outcome, drop, screened=False):
        screen = {"accuracy_drop_points": drop, "accuracy_drop_error_points": 0.0, "max_ssim": 0.9, "ssim_mean_image": 0.25}
        return {"name": name, "outcome": outcome, "training_drop_points": drop, **({"screen": screen} if screened else {})}

    bars = rs.Bars()
    unattacked = [point("b32", MISSED, 60.0), point("b16", MISSED, 40.0), point("b8", MISSED, 45.0)]
    assert rs.closing_screen_candidate(rs.SearchState(points=unattacked), bars)["name"] == "b16"
    # L_dap lost fewer points but leaked: it is no protective point, and the closing screen is still due.
    leaked = [*unattacked, point("ldap_0.9", LEAKED, 5.0, screened=True)]
    assert rs.closing_screen_candidate(rs.SearchState(points=leaked), bars)["name"] == "b16"
    # None when some candidate's attacks were measured to hold, when one was chosen, or after a closing screen.
    held = [*unattacked, point("b4", MISSED, 5.5, screened=True)]
    assert rs.closing_screen_candidate(rs.SearchState(points=held), bars) is None
    assert rs.closing_screen_candidate(rs.SearchState(points=unattacked, chosen="b32"), bars) is None
    closed = [{**unattacked[0], "closing_screen": True}, *unattacked[1:]]
    assert rs.closing_screen_candidate(rs.SearchState(points=closed), bars) is None


def test_dapter_protect_refuses_a_near_chance_target_in_one_line_and_writes_nothing(tmp_path):
    from conftest import assert_one_error_line, run_binary

    from dapter_tf.models import targets

    keras.utils.set_random_seed(0)
    target = str(tmp_path / "untrained.keras")
    targets.build_target("resnet18", (32, 32, 3), 2, width=4).save(target)
    proc = run_binary(
        "experiments.protect", "--dataset=cifar2_10", "--max_train=64", "--max_test=48", f"--target={target}",
        f"--workdir={tmp_path / 'protect'}",
    )  # fmt: skip
    assert_one_error_line(proc, "near chance (the commonest class alone scores")
    assert "--target_preprocessing (now zero_one)" in proc.stderr
    assert not (tmp_path / "protect").exists()


def test_a_search_that_met_no_bars_says_why_it_ended_and_names_a_point_on_each_side():
    code = {"output_block": 32, "architecture": "block_encoder"}
    ladder = [
        rs.Rung(protection.Recipe("b32", code), 1, 1.0),
        rs.Rung(protection.Recipe("b32_wide", code), 1, 9.0),
        rs.Rung(protection.Recipe("b16", {**code, "output_block": 16}), 4, 1.0),
    ]
    screen = {"accuracy_drop_points": 40.0, "accuracy_drop_error_points": 0.5, "max_ssim": 0.26, "ssim_mean_image": 0.25}
    state = rs.SearchState(
        points=[
            {"name": "b32", "outcome": MISSED, "stage": "training", "training_drop_points": 60.0, "seconds": 600.0},
            {"name": "b16", "outcome": MISSED, "stage": "screen", "training_drop_points": 40.0, "seconds": 900.0,
             "screen": screen, "closing_screen": True},
        ],
        ended=rs.BUDGET,
    )  # fmt: skip
    b16 = "b16 (+40.00 ± 0.50 points lost, SSIM 0.260 (+0.010 over the mean image), by the screen)"
    assert rs.describe_ending(state, ladder, rs.Bars(), 1.0) == (
        "no recipe met the bars (25 of 60 budgeted minutes spent; too dear for what was left: b32_wide; 2 tried).\n"
        f"   best protective point (attack bars held): {b16}\n"
        f"   best usable point (none held the accuracy bar; the one that lost fewest points): {b16}"
    )
    # Every candidate tried, one of them leaking at accuracy: the usable side is the leak, named as holding accuracy.
    leak = {**screen, "accuracy_drop_points": 1.0, "max_ssim": 0.9}
    state.points[0].update(outcome=LEAKED, stage="screen", training_drop_points=1.0, screen=leak)
    state.ended = rs.EXHAUSTED
    assert rs.describe_ending(state, ladder, rs.Bars(), None).splitlines()[0] == (
        "no recipe met the bars (no candidate was left to try; passed over: b32_wide sends as much of the photo as "
        "b32, which leaked; 2 tried)."
    )
    assert rs.describe_ending(state, ladder, rs.Bars(), None).splitlines()[2].startswith(
        "   best usable point (accuracy bar held): b32 (+1.00 ± 0.50 points lost, SSIM 0.900"
    )
    # Every rung tried, none passed over.
    state.points.append({"name": "b32_wide", "outcome": MISSED, "stage": "training", "training_drop_points": 9.0})
    assert rs.describe_ending(state, ladder, rs.Bars(), None).splitlines()[0] == (
        "no recipe met the bars (every candidate was tried; 3 tried)."
    )
