"""The recipe search of ``dapter-protect``: the first converter training that meets a provider's bars.

results/protection measured, by hand, which recipes hold against attackers trained after the converter
froze: a coarse output code (one colour per block) holds every attack bar where the target needs
little of the image, if the converter is trained long enough and with L_acc towards the target's own
answer; L_dap alone is inverted by a learned decoder. This module turns those findings into a ladder
of recipes and a stopping rule:

* **The ladder** (``build_ladder``) goes from the most protective code to the least: one colour per
  image, then 4, 16, 64 colours (blocks of ``side``, ``side / 2``, ...), then L_dap alone (the paper's
  converter), then, only with ``allow_model_on_device``, the class code (which runs a copy of the
  provider's model on the phone). At each code it tries the cheap training first (the block encoder,
  whose cost falls with the block), then a wider and three times longer one. Every coarse code trains
  with L_head (``TASK_HEAD_WEIGHT``): a linear head on the encoder's mean features, dropped after
  training, that makes the encoder read the task from the photo, which a few colours must carry.
* **Screening** (``screen_spec``): every candidate meets a short attack (the same attackers, fewer
  epochs and images), which rejects a leaking one cheaply. One whose accuracy drop, measured on
  every held-out image as training ends, misses the bar goes no further: if it missed by little, its
  screen puts it on the frontier, names the best protective point of a search that meets no bars,
  and, if it leaks, rules out every finer code; one that missed by more than the bar again is not
  attacked at all. A screen can only reject: a candidate that passes it and holds the
  accuracy bar is confirmed by the full suite, and only the full suite's figures are ever claimed.
* **The closing screen** (``closing_screen_candidate``): a search that meets no bars names the best
  point on each side. If no candidate's attacks were measured to hold (every one missed the
  accuracy bar by more than the bar again, or leaked), the unattacked candidate that lost fewest
  points is screened as the search ends, once, even past the budget (a screen is short beside a
  training), so that the best protective point is a measured one.
* **The stopping rule** (``next_rung``): stop at the first candidate whose full suite meets every
  bar. A code that leaks makes every finer code (and L_dap, the finest) pointless, so they are
  skipped; a code that only misses the accuracy bar moves on to the next candidate. A candidate
  that would not fit in what is left of the budget (at the seconds per unit of cost trained so far)
  is passed over for a cheaper one further down; the search stops when the budget is spent or no
  candidate left fits.

* **int8** (``MARGIN_EPOCHS``): a coarse code's colours sit anywhere between two levels of the output
  grid, and a full-int8 file's small error (about 0.6 levels) rounds some of them to the next level:
  CelebA Male's b32_wide converter's int8 file broke its entropy gate (0.174 bits against 0.15). So a
  coarse-code candidate that holds the accuracy bar is fine-tuned briefly with L_margin
  (``losses.code_margin_loss``), which moves each value towards the middle of its level, and that
  fine-tuned converter is the candidate: its accuracy is measured again, and the screen, the suite,
  the export and the release all see it.

Every candidate works in its own folders (``<name>/converter``, ``<name>/int8_margin`` for a coarse
code, ``<name>/screen``, ``<name>/suite``),
each resumable, and ``search.json`` records each one's outcome and seconds, so a killed search
resumes where it stopped with the time already spent counted against the budget (that of the
candidate it was measuring too: ``in_progress.json``).
"""

import contextlib
import dataclasses
import json
import os
import threading
import time

from dapter_tf import train
from dapter_tf.analysis import protection
from dapter_tf.errors import DapterError
from dapter_tf.records import files, runs

SEARCH_FILE = "search.json"
# The candidate being measured and the seconds spent on it so far, rewritten every IN_PROGRESS_EVERY_SECONDS.
IN_PROGRESS_FILE = "in_progress.json"
IN_PROGRESS_EVERY_SECONDS = 30.0
REPORT_FILE = "search.md"
PLOT_FILE = "search.png"

# What the search ended with (search.json "ended"): a candidate met the bars, the ladder ran out, or the budget did.
MET, EXHAUSTED, BUDGET = "met", "exhausted", "budget"
# One candidate's outcome.
PASSED = "met the bars"
MISSED_ACCURACY = "missed the accuracy bar"
LEAKED = "missed an attack bar"
MISSED_BOTH = "missed both"
SKIPPED = "skipped"

# The block encoder's channels, and the wider variant's (results/protection: 48/96/192 brought b32 on
# Cifar2:10 from 7.11 to 2.75 points lost).
NARROW_FILTERS = (16, 32, 64)
WIDE_FILTERS = (48, 96, 192)
MIN_BLOCK = 4
# The code margin's fine-tuning of a coarse-code candidate (module docstring, "int8"). On CelebA Male's
# b32_wide (MobileNetV2 SavedModel; 2,000 held-out photos, 200 calibration images), 3 epochs at 1e-4
# took its int8 file from a mean pixel difference of 0.572 levels and an entropy change of 0.174 bits
# (gate 0.15) to 0.300 and 0.038 with weight 0.3 (the Keras converter losing 1.20 points instead of
# 1.40), and to 0.240 and 0.010 with weight 1 (but 2.05 points lost): 0.3 keeps 4x headroom on the gate.
MARGIN_EPOCHS = 3
MARGIN_LEARNING_RATE = 1e-4
MARGIN_WEIGHT = 0.3
MARGIN_DIR = "int8_margin"
# A candidate that missed the accuracy bar is screened only if it lost at most this many times the bar
# (``attack_stages``).
SCREEN_MISSES_WITHIN = 2.0
# Adam's initial rate for the coarse codes. A served target's answer can flip with a block's colour
# (MobileNetV2 on CelebA Male): at 1e-3 the block encoder's L_acc rose above the class prior's and it
# lost 43.40 points at b = 32 in 10 epochs, at 3e-4 19.05 (WORKSPACE.md, "Protecting a served model").
CODE_LEARNING_RATE = 3e-4
# The weight of L_head (``losses.task_head_loss``) for the coarse codes: the block encoder must read the
# task from the photo itself, and through a few colours the target's gradient barely teaches it. CelebA
# Male on a served MobileNetV2 (held-out 0.9125), b = 32, (48, 96, 192), 10 epochs at 3e-4, no augmentation
# (dapter-protect's default): 28.50 points lost without L_head, 0.05 gained at weight 10 (WORKSPACE.md,
# "Protecting a served model"); the same encoder alone, trained on the target's answers, reaches 0.9159
# training accuracy in 3 epochs, so the encoder can read the task: L_head makes it.
TASK_HEAD_WEIGHT = 10.0
# The coarse codes keep their best epoch on this many training photos held out of their training
# (``DapterConfig.validation_images``), never on the test split. One colour per photo flips the target's
# answer for many photos at once: on CelebA Male's served MobileNetV2, b64_wide's held-out accuracy swung
# between 0.69 and 0.92 from epoch to epoch and ended 8.85 points down (docs/protection.md).
VALIDATION_IMAGES = 1000


def validation_images_for(train_set) -> int:
    """How many photos the coarse codes hold out of ``train_set`` to pick their best epoch.

    ``VALIDATION_IMAGES``, or an eighth of the photos if that is fewer; 0 (keep the last epoch) for
    streamed records, which a validation split cannot be drawn from.
    """
    from dapter_tf.data.images import ImageSet

    return min(VALIDATION_IMAGES, len(train_set) // 8) if isinstance(train_set, ImageSet) else 0


@dataclasses.dataclass(frozen=True)
class Bars:
    """What a provider asks of a converter (``dapter-protect``'s ``--max_*`` flags).

    Attributes:
        max_accuracy_drop: Points of target accuracy the converter may cost, on held-out images.
        max_ssim_over_mean: How far the strongest reconstruction's SSIM may rise over the mean
            training image's (the score of an attacker who learnt nothing of the photo).
        max_attack_gap: Points by which the best labelling attacker may beat an attacker who knows
            only the target label.
    """

    max_accuracy_drop: float = 3.0
    max_ssim_over_mean: float = 0.05
    max_attack_gap: float = 5.0

    def criteria(self):
        """The attack suite's ``SecurityCriteria`` for these bars (no absolute SSIM bar: the mean image's is the baseline)."""
        from dapter_tf.records.suite import SecurityCriteria

        return SecurityCriteria(
            max_drop_points=self.max_accuracy_drop,
            max_ssim=None,
            max_ssim_over_mean_image=self.max_ssim_over_mean,
            max_label_gap_points=self.max_attack_gap,
        ).validate()


@dataclasses.dataclass(frozen=True)
class Rung:
    """One candidate of the ladder.

    Attributes:
        recipe: Its training, as overrides of the search's base config.
        colours: How many colours a converted image carries at most (its code's protection level:
            fewer is more protective); 0 for L_dap, which sends every pixel; -1 for the class code.
        cost: Its training cost relative to the ladder's first rung (epochs times width), to
            estimate its time from the ones already trained.
    """

    recipe: protection.Recipe
    colours: int
    cost: float

    @property
    def name(self) -> str:
        return self.recipe.name


def build_ladder(
    side: int,
    epochs: int = 10,
    allow_model_on_device: bool = False,
    lambda_: float = 0.5,
    validation_images: int = VALIDATION_IMAGES,
    wide_filters=WIDE_FILTERS,
    candidates=(),
) -> list:
    """The candidates, most protective and cheapest first.

    Args:
        side: The image side (square images; the task's ``--image_size``).
        epochs: Epochs of the cheap training at each code; the wide one trains three times as long.
        allow_model_on_device: Add the class code last: a converter that holds a copy of the target
            (the provider's model ships to every phone).
        lambda_: λ of L_dap for the coarse codes (results/protection: 0.5 kept more accuracy than 0.9).
        validation_images: Training photos each coarse code holds out to keep its best epoch
            (``validation_images_for``); 0 keeps the last epoch.
        wide_filters: The block encoder's channels in the wide rungs (the last at the block resolution).
        candidates: Names of the rungs to keep, in the ladder's order (empty: all), e.g. to rerun one recipe.

    Returns:
        A list of ``Rung``.

    Raises:
        DapterError: on a name in ``candidates`` that is not a rung of this ladder, or channel counts
            that are not positive.
    """
    from dapter_tf.models.converter import MAX_OUTPUT_BLOCK

    blocks = [b for b in (64, 32, 16, 8, 4) if MIN_BLOCK <= b <= min(side, MAX_OUTPUT_BLOCK) and side % b == 0]
    common = {
        "lambda_": lambda_,
        "cosine_decay": True,
        "acc_labels": "target",
        "learning_rate": CODE_LEARNING_RATE,
        "task_head": TASK_HEAD_WEIGHT,
        "validation_images": validation_images,
    }
    wide_filters = tuple(int(f) for f in wide_filters)
    if not wide_filters or min(wide_filters) < 1:
        raise DapterError(f"the wide rungs need positive channel counts, got {wide_filters}")
    # The rung's relative cost as the default's 9 was counted: 3x the epochs times the widest stage's
    # channels over the narrow encoder's (only the budget's time estimates use it).
    wide_cost = 3.0 * wide_filters[-1] / NARROW_FILTERS[-1]
    ladder = []
    for block in blocks:
        colours = (side // block) ** 2
        code = {**common, "output_block": block, "architecture": "block_encoder"}
        ladder.append(
            Rung(protection.Recipe(f"b{block}", {**code, "epochs": epochs, "filters": NARROW_FILTERS}), colours, 1.0)
        )
        ladder.append(
            Rung(
                protection.Recipe(f"b{block}_wide", {**code, "epochs": 3 * epochs, "filters": wide_filters}),
                colours,
                wide_cost,
            )
        )
    # L_dap alone, at the paper's λ: every pixel is sent; the least protective of the paper's kind.
    ladder.append(Rung(protection.Recipe("ldap_0.9", {"lambda_": 0.9, "epochs": epochs, "cosine_decay": True}), 0, 4.0))
    if allow_model_on_device:
        ladder.append(
            Rung(
                protection.Recipe(
                    "class_code", {"class_code": "target", "acc_labels": "target", "lambda_": 0.9, "epochs": 1}
                ),
                -1,
                1.0,
            )
        )
    known = [r.name for r in ladder]
    unknown = [name for name in candidates if name not in known]
    if unknown:
        raise DapterError(f"no candidate named {', '.join(unknown)} at {side}x{side}; the ladder's: {', '.join(known)}")
    return [r for r in ladder if not candidates or r.name in candidates]


def _finer(rung: Rung, than: Rung) -> bool:
    """Whether ``rung`` sends at least as much of the photo as ``than`` (more colours, or every pixel).

    The class code sends one decision per photo whatever the code before it leaked, so it is never finer.
    """
    if rung.colours < 0:
        return False
    if than.colours == 0:
        return rung.colours == 0
    return rung.colours == 0 or rung.colours >= than.colours


def next_rung(ladder, outcomes: dict, budget_left: float | None = None, seconds_per_cost: float | None = None):
    """The stopping rule: the next candidate to train, or ``None`` with the reason the search ends.

    Args:
        ladder: The ``Rung`` list, in order.
        outcomes: Name -> outcome (``PASSED``, ``MISSED_ACCURACY``, ``LEAKED``, ``MISSED_BOTH`` or
            ``SKIPPED``) of the candidates done so far.
        budget_left: Seconds of budget left (``None``: no budget).
        seconds_per_cost: Seconds one unit of ``Rung.cost`` took so far (``None``: nothing trained yet).

    Returns:
        ``(rung, None)`` to train ``rung`` next, or ``(None, reason)``: ``MET``, ``EXHAUSTED`` or ``BUDGET``.
    """
    if PASSED in outcomes.values():
        return None, MET
    ruled_out = passed_over(ladder, outcomes)  # A coarser code already leaked: these send more of the photo.
    unaffordable = False
    for rung in ladder:
        if rung.name in outcomes or rung.name in ruled_out:
            continue
        if budget_left is not None:
            if budget_left <= 0:
                return None, BUDGET
            if seconds_per_cost is not None and rung.cost * seconds_per_cost > budget_left:
                # Too dear for what is left: a cheaper candidate further down may still fit.
                unaffordable = True
                continue
        return rung, None
    return None, BUDGET if unaffordable else EXHAUSTED


def passed_over(ladder, outcomes: dict) -> dict:
    """The candidates never tried because a coarser code leaked: name -> the leaked candidate that rules it out.

    So that a search that stopped early says why (a leak at b32 rules out b32_wide, b16, ... and L_dap).
    """
    leaked = [r for r in ladder if outcomes.get(r.name) in (LEAKED, MISSED_BOTH)]
    out = {}
    for rung in ladder:
        if rung.name not in outcomes:
            worse = next((w for w in leaked if _finer(rung, w)), None)
            if worse is not None:
                out[rung.name] = worse.name
    return out


def outcome_of(accuracy_holds: bool, attacks_hold: bool | None) -> str:
    """A candidate's outcome from its verdicts (``attacks_hold`` ``None``: not attacked, its accuracy missed)."""
    if accuracy_holds and attacks_hold:
        return PASSED
    if attacks_hold is None:
        return MISSED_ACCURACY
    if accuracy_holds:
        return LEAKED
    return MISSED_BOTH if not attacks_hold else MISSED_ACCURACY


def screen_spec(full, epochs: int = 3, images: int = 4000):
    """The short attack: the full suite's attackers with at most ``epochs`` epochs on at most ``images`` images.

    It only rejects (a candidate that passes goes to the full suite), so it may be weaker than the
    full suite without weakening any claim.
    """
    reconstruction = tuple(
        dataclasses.replace(
            spec,
            epochs=min(spec.epochs, epochs),
            train_images=min(spec.train_images, images) if spec.train_images else images,
        )
        for spec in full.reconstruction
        if spec.architecture != "symmetric"  # the U-Net is the stronger decoder; the screen keeps it alone
    ) or full.reconstruction
    labelling = full.labelling
    if labelling is not None:
        labelling = dataclasses.replace(
            labelling,
            attackers=tuple(a for a in labelling.attackers if a == "scratch") or labelling.attackers,
            pretrain_epochs=min(labelling.pretrain_epochs, epochs),
            finetune_epochs=min(labelling.finetune_epochs, epochs),
            attack_images=min(labelling.attack_images, images) if labelling.attack_images else images,
        )
    return dataclasses.replace(full, reconstruction=reconstruction, labelling=labelling)


def attacks_hold(suite) -> bool:
    """Whether every attack verdict of a ``SuiteResults`` holds (usability is judged apart)."""
    return all(v.holds is not False for v in suite.verdicts() if v.name != "usability")


@dataclasses.dataclass
class SearchState:
    """What ``search.json`` holds: every candidate's outcome, figures and seconds, and how the search ended."""

    points: list = dataclasses.field(default_factory=list)
    ended: str = ""
    chosen: str = ""
    target_accuracy: float | None = None

    @property
    def outcomes(self) -> dict:
        return {p["name"]: p["outcome"] for p in self.points}

    @property
    def seconds(self) -> float:
        return sum(p.get("seconds", 0.0) for p in self.points)

    def seconds_per_cost(self, ladder) -> float | None:
        costs = {r.name: r.cost for r in ladder}
        trained = [p for p in self.points if p.get("train_seconds") and p["name"] in costs]
        if not trained:
            return None
        return sum(p["train_seconds"] for p in trained) / sum(costs[p["name"]] for p in trained)

    @classmethod
    def load(cls, workdir: str) -> "SearchState":
        path = os.path.join(workdir, SEARCH_FILE)
        if not os.path.isfile(path):
            return cls()
        with open(path) as f:
            saved = json.load(f)
        return cls(saved["points"], saved.get("ended", ""), saved.get("chosen", ""), saved.get("target_accuracy"))

    def save(self, workdir: str, extra: dict) -> None:
        files.write_json(os.path.join(workdir, SEARCH_FILE), {**extra, **dataclasses.asdict(self)})


def run_search(
    base: train.DapterConfig,
    ladder,
    bars: Bars,
    full_spec,
    task,
    train_set,
    test_set,
    workdir: str,
    budget_hours: float | None = None,
    screen=None,
    log=print,
) -> SearchState:
    """Trains, screens and attacks the ladder's candidates until one meets ``bars`` (``next_rung``).

    Args:
        base: The config every recipe overrides (data, target, its contract, batch, seed).
        ladder: ``build_ladder``'s candidates.
        bars: The provider's bars.
        full_spec: The attack suite that confirms a candidate (its criteria are replaced by ``bars``').
        task, train_set, test_set: The task and its images (the attackers train on the converted
            training images and are measured on the held-out ones).
        workdir: Where each candidate's folders and ``search.json`` go.
        budget_hours: Stop before a candidate that would not fit in what is left (``None``: no budget).
        screen: The short attack (default: ``screen_spec(full_spec)``).
        log: Where the progress lines go.

    Returns:
        The ``SearchState``: every point, how the search ended and the chosen candidate's name.
    """
    criteria = bars.criteria()
    full_spec = dataclasses.replace(full_spec, criteria=criteria)
    screen = dataclasses.replace(screen or screen_spec(full_spec), criteria=criteria)
    full_spec.validate(task)
    protection.check_recipes([r.recipe for r in ladder], base)
    os.makedirs(workdir, exist_ok=True)
    state = SearchState.load(workdir)
    extra = {
        "bars": dataclasses.asdict(bars),
        "budget_hours": budget_hours,
        "ladder": [{"name": r.name, "recipe": r.recipe.overrides, "colours": r.colours} for r in ladder],
        "suite": protection.suite_spec_dict(full_spec),
        "screen": protection.suite_spec_dict(screen),
    }
    budget = None if budget_hours is None else budget_hours * 3600.0
    while True:
        interrupted = _interrupted_seconds(workdir)  # What an interrupted run spent on the candidate it was measuring.
        left = None if budget is None else budget - state.seconds - sum(interrupted.values())
        rung, reason = next_rung(ladder, state.outcomes, left, state.seconds_per_cost(ladder))
        if rung is None:
            state.ended = reason
            state.chosen = next((p["name"] for p in state.points if p["outcome"] == PASSED), "")
            closing = closing_screen_candidate(state, bars)
            if closing is not None:
                data = (task, train_set, test_set)
                _closing_screen(closing, ladder, base, data, workdir, screen, bars, interrupted, log)
                state.points = json.loads(json.dumps(state.points))  # As search.json holds them.
                _clear_interrupted(workdir)
            state.save(workdir, extra)
            return state
        done = len(state.points)
        log(f"== candidate {rung.name} ({done + 1} tried of at most {len(ladder)}): {rung.recipe.overrides}")
        earlier = interrupted.get(rung.name, 0.0)
        with _counting_seconds(workdir, rung.name, earlier):
            point = _measure(rung, base, task, train_set, test_set, workdir, screen, full_spec, bars, log)
        point["seconds"] += earlier
        state.points.append(json.loads(json.dumps(point)))  # As search.json holds it: a rerun reads the same.
        state.save(workdir, extra)
        _clear_interrupted(workdir)
        log(f"   {rung.name}: {point['outcome']} ({_figures(point)}; {point['seconds'] / 60:.1f} min)")


def _interrupted_seconds(workdir: str) -> dict:
    """``{candidate: seconds}`` that a killed run spent on the candidate it was measuring (``IN_PROGRESS_FILE``)."""
    record = files.read_json(os.path.join(workdir, IN_PROGRESS_FILE)) or {}
    return {record["name"]: float(record["seconds"])} if "name" in record else {}


def _clear_interrupted(workdir: str) -> None:
    path = os.path.join(workdir, IN_PROGRESS_FILE)
    if os.path.isfile(path):
        os.remove(path)


@contextlib.contextmanager
def _counting_seconds(workdir: str, name: str, earlier: float, every: float = IN_PROGRESS_EVERY_SECONDS):
    """Records, every ``every`` seconds, the seconds spent on candidate ``name`` (``earlier`` included).

    A search killed mid-candidate resumes the candidate's stages, and its budget counts what the
    killed run had spent on it (to within ``every`` seconds), not only what the rerun spends.
    """
    start, stop = time.time(), threading.Event()

    def record():
        files.write_json(os.path.join(workdir, IN_PROGRESS_FILE), {"name": name, "seconds": earlier + time.time() - start})

    def beat():
        while not stop.wait(every):
            record()

    record()
    thread = threading.Thread(target=beat, name="search-seconds", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        record()


def _measure(rung, base, task, train_set, test_set, workdir, screen, full_spec, bars, log) -> dict:
    """Trains one candidate, screens it, and confirms it with the full suite if it passes the screen."""
    start = time.time()
    config = rung.recipe.apply(base)
    converter_dir = os.path.join(workdir, rung.name, "converter")
    trained = train.train_dapter(config, task, train_set, test_set, converter_dir)
    drop = 100.0 * (trained["accuracy_original"] - trained["accuracy_converted"])
    point = {
        "name": rung.name,
        "family": rung.recipe.family,
        "recipe": rung.recipe.overrides,
        "colours": rung.colours,
        "converter": converter_dir,
        "training_drop_points": drop,
    }
    if drop <= bars.max_accuracy_drop and config.output_block > 1 and config.output_step > 1:
        # The candidate becomes the converter fine-tuned on L_margin (module docstring, "int8").
        point["before_margin_drop_points"] = drop
        converter_dir = os.path.join(workdir, rung.name, MARGIN_DIR)
        log(f"   int8 margin: {MARGIN_EPOCHS} epochs of L_dap + {MARGIN_WEIGHT:g} L_margin -> {converter_dir}")
        trained = train.train_dapter(margin_config(config, point["converter"]), task, train_set, test_set, converter_dir)
        drop = 100.0 * (trained["accuracy_original"] - trained["accuracy_converted"])
        point.update(converter=converter_dir, training_drop_points=drop)
    point["train_seconds"] = time.time() - start
    specs = {"screen": screen, "suite": full_spec}
    point.update(outcome=MISSED_ACCURACY, stage="training")  # Unless an attack stage below measures it.
    for stage in attack_stages(drop, bars):
        if _attack(point, stage, specs[stage], rung, config, task, train_set, test_set, workdir, bars, log) != PASSED:
            break
    point["seconds"] = time.time() - start
    return point


def _attack(point, stage, spec, rung, config, task, train_set, test_set, workdir, bars, log) -> str:
    """Runs (or reads back) one attack stage on ``point``'s converter; records it in ``point``; returns the outcome."""
    from dapter_tf.attacks import AttackInputData, SuiteResults, run_attack_suite
    from dapter_tf.attacks.suite import SUITE_FILE

    converter_file = os.path.join(point["converter"], runs.CONVERTER_FILE)
    contract = config.target_contract
    input_data = AttackInputData(
        task, train_set, test_set, converter_file, config.target_path, config.data, target_contract=contract
    )
    folder = os.path.join(workdir, rung.name, stage)
    # The converter's hash is part of what a stage measured: results of another converter are refused.
    spec_record = {**protection.suite_spec_dict(spec), "converter_sha256": files.sha256(converter_file)}
    protection.write_suite_spec(folder, spec_record)
    if os.path.isfile(os.path.join(folder, SUITE_FILE)):
        suite = SuiteResults.load(os.path.join(folder, SUITE_FILE))  # Measured before an interruption.
    else:
        attackers = ", ".join(s.architecture for s in spec.reconstruction) + " reconstruction"
        if spec.runs_labelling(task):
            attackers += f"; {', '.join(spec.labelling.attackers)} labelling"
        log(f"   {stage} ({attackers})")
        suite = run_attack_suite(input_data, spec, folder)
    point[stage] = protection.frontier_point(rung.recipe, config, suite)
    accuracy_holds = suite.accuracy_drop_points is not None and suite.accuracy_drop_points <= bars.max_accuracy_drop
    outcome = outcome_of(accuracy_holds, attacks_hold(suite))
    point.update(outcome=outcome, stage=stage)
    return outcome


def closing_screen_candidate(state: SearchState, bars: Bars) -> dict | None:
    """The point to screen as a search that met no bars ends (module docstring), or ``None``.

    ``None`` when a candidate was chosen, when some candidate's attacks were already measured to hold
    (it is the best protective point), when a closing screen already ran (a resumed search does not
    screen a second candidate), or when every candidate was attacked.
    """
    if state.chosen or any(p.get("closing_screen") for p in state.points):
        return None
    if best_points(state, bars)["protective"] is not None:
        return None
    unattacked = [p for p in state.points if not (p.get("screen") or p.get("suite"))]
    return min(unattacked, key=lambda p: p["training_drop_points"], default=None)


def _closing_screen(point, ladder, base, data, workdir, screen, bars, interrupted, log) -> None:
    """Screens ``point``'s converter as the search ends; its seconds count towards the point's own."""
    rung = next(r for r in ladder if r.name == point["name"])
    log(
        f"== closing screen of {point['name']}: no candidate's attacks were measured to hold; the one that lost "
        f"fewest points ({point['training_drop_points']:+.2f} as training ended) is screened"
    )
    start, earlier = time.time(), interrupted.get(point["name"], 0.0)
    with _counting_seconds(workdir, point["name"], earlier):
        screened = _attack(point, "screen", screen, rung, rung.recipe.apply(base), *data, workdir, bars, log)
    # Its accuracy verdict stays the training's: it missed the bar by more than the bar again, and only a
    # candidate that held it may be confirmed or chosen.
    point.update(outcome=outcome_of(False, screened in (PASSED, MISSED_ACCURACY)), closing_screen=True)
    point["seconds"] += earlier + time.time() - start
    log(f"   {point['name']}: {point['outcome']} ({_figures(point)})")


def attack_stages(training_drop_points: float, bars: Bars) -> tuple:
    """The attacks a trained candidate meets, in order: the screen, then the suite if it may be chosen.

    A candidate that missed the accuracy bar by little (at most ``SCREEN_MISSES_WITHIN`` times the bar)
    is still screened: that puts it on the frontier, names the best protective point of a search that
    meets no bars, and a leak it shows rules out every finer code (``next_rung``). One that missed by
    more is attacked no further: its screen cost 9 to 22 min on CelebA Male and told nothing a user
    would act on. Only a candidate that held the bar can be chosen, so only it is confirmed.
    """
    if training_drop_points <= bars.max_accuracy_drop:
        return ("screen", "suite")
    if training_drop_points <= SCREEN_MISSES_WITHIN * bars.max_accuracy_drop:
        return ("screen",)
    return ()


def margin_config(config: train.DapterConfig, converter_dir: str) -> train.DapterConfig:
    """The code margin's fine-tuning of the converter trained in ``converter_dir`` (module docstring, "int8")."""
    return dataclasses.replace(
        config,
        init_converter=os.path.join(converter_dir, runs.CONVERTER_FILE),
        epochs=MARGIN_EPOCHS,
        learning_rate=MARGIN_LEARNING_RATE,
        cosine_decay=True,
        code_margin=MARGIN_WEIGHT,
        task_head=0.0,  # A fresh head would pull the trained encoder about; the short fine-tuning keeps what it reads.
    )


def _figures(point: dict) -> str:
    measured = point.get("suite") or point.get("screen")
    if measured is None:
        return f"{point['training_drop_points']:+.2f} points lost as training ended"
    text = f"{measured['accuracy_drop_points']:+.2f} ± {measured['accuracy_drop_error_points']:.2f} points lost"
    if measured.get("max_ssim") is not None:
        over = measured["max_ssim"] - measured["ssim_mean_image"]
        text += f", SSIM {measured['max_ssim']:.3f} ({over:+.3f} over the mean image)"
    if measured.get("max_label_gap_points") is not None:
        text += f", labelling {measured['max_label_gap_points']:+.2f} points over the bound"
    text += f", by the {point['stage']}"
    return text


def best_points(state: SearchState, bars: Bars) -> dict:
    """The best point on each side of the bars, for a search that met none.

    Returns:
        ``{"protective": point or None, "usable": point or None}``: among the candidates whose
        attacks held, the one that lost fewest points; among those whose accuracy held (or lost
        least), the one whose strongest reconstruction was weakest.
    """
    attacked = [p for p in state.points if p.get("suite") or p.get("screen")]
    protective = [p for p in attacked if p["outcome"] in (PASSED, MISSED_ACCURACY)]
    usable = [p for p in state.points if p["outcome"] in (PASSED, LEAKED)]

    def drop(p):
        measured = p.get("suite") or p.get("screen")
        return measured["accuracy_drop_points"] if measured else p["training_drop_points"]

    def leak(p):
        measured = p.get("suite") or p.get("screen") or {}
        if measured.get("max_ssim") is None:
            return float("inf")
        return measured["max_ssim"] - measured["ssim_mean_image"]

    if not usable:
        usable = sorted(state.points, key=drop)[:1]
    return {
        "protective": min(protective, key=drop, default=None),
        "usable": min(usable, key=leak, default=None),
    }


def describe_ending(state: SearchState, ladder, bars: Bars, budget_hours: float | None) -> str:
    """What ``dapter-protect`` prints when no recipe met the bars: why the search ended, and its best points."""
    outcomes = state.outcomes
    skipped = passed_over(ladder, outcomes)
    if state.ended == BUDGET:
        why = f"{state.seconds / 60:.0f} of {budget_hours * 60:.0f} budgeted minutes spent"
        untried = [r.name for r in ladder if r.name not in outcomes and r.name not in skipped]
        if untried:
            why += f"; too dear for what was left: {', '.join(untried)}"
    else:
        # Candidates passed over for leaking were not tried: say so, not "every candidate was tried".
        why = "no candidate was left to try" if skipped else "every candidate was tried"
    if skipped:
        by = sorted(set(skipped.values()))
        verb = "sends" if len(skipped) == 1 else "send"
        why += f"; passed over: {', '.join(skipped)} {verb} as much of the photo as {', '.join(by)}, which leaked"
    best = best_points(state, bars)
    usable = best["usable"]
    if usable is not None and usable["outcome"] in (PASSED, LEAKED):
        usable_side = "accuracy bar held"
    else:
        usable_side = "none held the accuracy bar; the one that lost fewest points"
    return (
        f"no recipe met the bars ({why}; {len(state.points)} tried).\n"
        f"   best protective point (attack bars held): {describe_point(best['protective'])}\n"
        f"   best usable point ({usable_side}): {describe_point(usable)}"
    )


def describe_point(point: dict | None) -> str:
    """One line for a point: its name and figures."""
    if point is None:
        return "none"
    return f"{point['name']} ({_figures(point)})"


def frontier_of(state: SearchState, title: str, target: str, full_spec) -> dict:
    """The searched points as a frontier (``protection.write_frontier``'s input): attacked points only."""
    points = []
    for p in state.points:
        measured = p.get("suite") or p.get("screen")
        if measured is not None:
            name = p["name"] if p.get("suite") else f"{p['name']} (screen)"
            points.append({**measured, "name": name})
    return {
        "task": title,
        "title": title,
        "target": target,
        "suite": protection.suite_spec_dict(full_spec),
        "points": points,
    }


def write_report(state: SearchState, bars: Bars, full_spec, workdir: str, title: str, target: str) -> str:
    """Writes ``search.md`` and ``search.png``: every candidate tried, its outcome and figures, and the plot.

    Returns:
        The report's path.
    """
    lines = [
        f"# {title}",
        "",
        f"Bars: at most {bars.max_accuracy_drop:g} points lost; strongest reconstruction SSIM at most the mean "
        f"training image's + {bars.max_ssim_over_mean:g}; labelling at most {bars.max_attack_gap:g} points over "
        "the bound of knowing only the target label.",
        "",
        f"Ended: {state.ended}" + (f"; chosen: **{state.chosen}**" if state.chosen else "") + ".",
        "",
        "| candidate | recipe | outcome | measured by | figures | minutes |",
        "|---|---|---|---|---|---|",
    ]
    for p in state.points:
        recipe = " ".join(f"{k}={v}" for k, v in p["recipe"].items())
        lines.append(
            f"| {p['name']} | {recipe} | {p['outcome']} | {'closing screen' if p.get('closing_screen') else p['stage']} "
            f"| {_figures(p)} | {p['seconds'] / 60:.1f} |"
        )
    lines += [
        "",
        "A screen (a short attack) can only reject a candidate; every figure claimed for the chosen one is the "
        "full suite's, measured by attackers trained after the converter froze, on converted images of its own "
        "training split, on held-out images.",
    ]
    path = os.path.join(workdir, REPORT_FILE)
    files.write_bytes(path, ("\n".join(lines) + "\n").encode())
    frontier = frontier_of(state, title, target, full_spec)
    if frontier["points"]:
        protection.plot_frontier(frontier, os.path.join(workdir, PLOT_FILE), bars.criteria())
    return path


def check_budget(budget_hours: float | None) -> None:
    """Raises DapterError unless the budget is positive (or ``None``)."""
    if budget_hours is not None and not budget_hours > 0:
        raise DapterError(f"--budget_hours must be > 0, got {budget_hours}")
