"""The lambda study of §7.1: a sweep over lambda (Fig. 8) and the provider's tuning strategy.

Both train converters with ``train.train_dapter``, one workdir per converter, so every point and
every round resumes on its own after a crash and a finished one is never trained again.
"""

import dataclasses
import os

from dapter_tf import cluster, evaluate, losses, models, train
from dapter_tf.data import ImageSet
from dapter_tf.data.tasks import Task
from dapter_tf.errors import DapterError
from dapter_tf.records import files, runs

DEFAULT_LAMBDAS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
SWEEP_FILE = "sweep.json"
TUNER_FILE = "tuner.json"


def _point(lambda_: float, results: dict, **extra) -> dict:
    keys = (
        "accuracy_original",
        "accuracy_converted",
        "accuracy_drop_points",
        "entropy_original",
        "entropy_converted",
        "entropy_ratio",
        "bandwidth_saving",
        "images",
        "steps",
        "train_seconds",
    )
    return {"lambda": lambda_, **{k: results[k] for k in keys if k in results}, **extra}


def check_lambdas(lambdas) -> tuple:
    """Returns the lambdas sorted, after checking each lies in [0, 1] and none repeats."""
    lambdas = tuple(sorted(losses.check_lambda(v) for v in lambdas))
    if not lambdas:
        raise DapterError("the lambda grid is empty")
    if len(set(lambdas)) != len(lambdas):
        raise DapterError(f"the lambda grid repeats a value: {', '.join(str(v) for v in lambdas)}")
    return lambdas


def run_sweep(
    config: train.DapterConfig, lambdas, task: Task, train_set: ImageSet, test_set: ImageSet, workdir: str
) -> dict:
    """Trains one converter per lambda (Fig. 8) and writes ``workdir/sweep.json``.

    Args:
        config: The converter training of every point; its ``lambda_`` is replaced by each value.
        lambdas: The grid.
        task, train_set, test_set: As ``train.train_dapter`` takes them.
        workdir: Holds ``lambda_<value>/`` per point and ``sweep.json``.

    Returns:
        ``{"task", "target", "points": [...]}``, one point per lambda in increasing order.
    """
    lambdas = check_lambdas(lambdas)
    if cluster.is_chief():  # In a cluster, the chief alone writes (dapter_tf.cluster).
        os.makedirs(workdir, exist_ok=True)
    points = []
    for i, lambda_ in enumerate(lambdas):
        path = runs.lambda_point_dir(workdir, lambda_)
        results = runs.read_results(path)
        if results is None:
            print(f"== lambda {lambda_:.3f} ({i + 1}/{len(lambdas)}) -> {path}", flush=True)
            results = train.train_dapter(dataclasses.replace(config, lambda_=lambda_), task, train_set, test_set, path)
        else:
            print(f"== lambda {lambda_:.3f} ({i + 1}/{len(lambdas)}): done before, read from {path}", flush=True)
        points.append(_point(lambda_, results))
        sweep = {
            "task": task.description,
            "target": config.target_path,
            "config": runs.config_to_dict(config),
            "points": points,
        }
        if cluster.is_chief():
            files.write_json(os.path.join(workdir, SWEEP_FILE), sweep)
    return sweep


def first_lambda_over(points, max_drop_points: float):
    """The smallest lambda whose accuracy drop exceeds ``max_drop_points`` (``None`` if none does)."""
    over = [p["lambda"] for p in points if p["accuracy_drop_points"] > max_drop_points]
    return min(over) if over else None


def lambda_staying_over(points, max_drop_points: float):
    """The smallest lambda from which every larger lambda of the grid drops more than ``max_drop_points``.

    Short runs make the drop wander around the line at small lambdas; this is where it leaves for good.
    """
    staying = None
    for p in sorted(points, key=lambda p: p["lambda"], reverse=True):
        if p["accuracy_drop_points"] <= max_drop_points:
            break
        staying = p["lambda"]
    return staying


@dataclasses.dataclass(frozen=True)
class TunerConfig:
    """The lambda tuning strategy of §7.1.

    Attributes:
        start: The first lambda (the paper's 0.9).
        step: How far lambda moves after a round that misses a criterion (the paper's 0.02).
        max_drop_points: Usability: the accuracy drop must stay below this (points).
        max_entropy_ratio: Security: converted entropy over original entropy must stay below this.
        max_entropy_bits: Security, the paper's absolute form (its index is under 3 bits); 0: unused.
        first_epochs: Epochs of the first round (from scratch, or from ``init_converter``).
        finetune_epochs: Epochs of every later round, which fine-tunes the previous round's converter.
        max_rounds: Stop after this many rounds.
        max_ssim: Security from the attack suite: the strongest reconstruction attacker's SSIM
            must be at most this; ``None``: unused.
        max_ssim_over_mean_image: Security from the suite: that SSIM may exceed the mean training
            image's by at most this; ``None``: unused.
        max_label_gap_points: Security from the suite: every labelling attacker may beat knowing
            only the target label by at most this many points; ``None``: unused.

    With any of the last three, every round also runs the attack suite (``attacks.suite``) on its
    converter, and "secure" needs its criteria too.
    """

    start: float = 0.9
    step: float = 0.02
    max_drop_points: float = 3.0
    max_entropy_ratio: float = 0.30
    max_entropy_bits: float = 0.0
    first_epochs: int = 5
    finetune_epochs: int = 2
    max_rounds: int = 10
    max_ssim: float | None = None
    max_ssim_over_mean_image: float | None = None
    max_label_gap_points: float | None = None

    def __post_init__(self):
        losses.check_lambda(self.start)
        if not 0 < self.step < 1:
            raise DapterError(f"step must lie in (0, 1), got {self.step}")
        if self.max_drop_points <= 0:
            raise DapterError(f"max_drop_points must be > 0, got {self.max_drop_points}")
        if not 0 < self.max_entropy_ratio <= 1:
            raise DapterError(f"max_entropy_ratio must lie in (0, 1], got {self.max_entropy_ratio}")
        if self.max_entropy_bits < 0:
            raise DapterError(f"max_entropy_bits must be >= 0 (0: unused), got {self.max_entropy_bits}")
        for name in ("first_epochs", "finetune_epochs", "max_rounds"):
            if getattr(self, name) < 1:
                raise DapterError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.security_criteria()  # Checks the suite's thresholds.

    @property
    def uses_suite(self) -> bool:
        """Whether rounds are judged by the attack suite too."""
        return any(v is not None for v in (self.max_ssim, self.max_ssim_over_mean_image, self.max_label_gap_points))

    def security_criteria(self):
        """The attack suite's criteria for this tuner's thresholds."""
        from dapter_tf.attacks.suite import SecurityCriteria

        return SecurityCriteria(
            max_drop_points=self.max_drop_points,
            max_ssim=self.max_ssim,
            max_ssim_over_mean_image=self.max_ssim_over_mean_image,
            max_label_gap_points=self.max_label_gap_points,
        ).validate()


def judge(measured: dict, tuner: TunerConfig, suite=None) -> tuple[bool, bool]:
    """Returns (security met, usability met) for a round's measurement (§7.1's two indices).

    Args:
        measured: The round's ``evaluate.summarize`` figures.
        tuner: The thresholds.
        suite: The round's ``SuiteResults`` when the tuner uses the attack suite: its reconstruction
            and labelling verdicts must hold too for the round to be secure.
    """
    secure = measured["entropy_ratio"] < tuner.max_entropy_ratio and (
        not tuner.max_entropy_bits or measured["entropy_converted"] < tuner.max_entropy_bits
    )
    if suite is not None:
        secure = secure and all(v.holds is not False for v in suite.verdicts() if v.name != "usability")
    usable = measured["accuracy_drop_points"] < tuner.max_drop_points
    return secure, usable


def _suite_figures(suite) -> dict:
    """What a tuner round logs of its attack suite."""
    if suite is None:
        return {}
    return {
        "max_ssim": suite.max_ssim,
        "ssim_mean_image": suite.ssim_mean_image,
        "max_label_gap_points": suite.max_label_gap_points,
    }


def next_lambda(lambda_: float, secure: bool, usable: bool, tuner: TunerConfig, tried) -> tuple[float | None, str]:
    """§7.1's rule: entropy too high -> lambda up; accuracy drop too high -> lambda down.

    Args:
        lambda_: This round's lambda.
        secure: Whether this round met the entropy criterion.
        usable: Whether it met the accuracy criterion.
        tuner: The thresholds and step.
        tried: The lambdas of every round so far, this one included.

    Returns:
        (next lambda, why); next lambda is ``None`` when tuning ends, and ``why`` says why.
    """
    if secure and usable:
        return None, "both criteria met"
    if not secure and not usable:
        return None, (
            f"both criteria missed at lambda {lambda_:.3f}: raising lambda would cost more accuracy and "
            f"lowering it would raise entropy, so they cannot both be met from here"
        )
    new = round(lambda_ + tuner.step if not secure else lambda_ - tuner.step, 6)
    if not 0.0 <= new <= 1.0:
        return None, f"lambda would leave [0, 1] ({new:.3f}); the criteria cannot both be met"
    # Coming back to a lambda is allowed once: the converter has trained more since. A third
    # visit means lambda bounces between two values whose converters each miss one criterion.
    if sum(abs(new - t) < 1e-9 for t in tried) >= 2:
        return None, (
            f"lambda would return to {new:.3f} a third time: entropy needs lambda above it and accuracy "
            f"below it, so the criteria cannot both be met at this step size"
        )
    return new, "entropy too high: raise lambda" if not secure else "accuracy drop too high: lower lambda"


def tune_lambda(
    config: train.DapterConfig,
    tuner: TunerConfig,
    task: Task,
    train_set: ImageSet,
    val_set: ImageSet,
    test_set: ImageSet,
    workdir: str,
    suite=None,
) -> dict:
    """Runs the tuning strategy of §7.1 and writes ``workdir/tuner.json`` after every round.

    Rounds decide on ``val_set``; the converter the tuner ends with is then measured on
    ``test_set``, which no decision saw. Round ``k`` trains in ``workdir/round_<k>`` (resumable).
    With the tuner's suite criteria (``TunerConfig.uses_suite``), each round also runs the attack
    suite on its converter in ``round_<k>/suite`` (attackers trained on ``train_set``, measured on
    ``val_set``), and the final converter gets a suite on ``test_set`` in ``workdir/final_suite``.

    Args:
        suite: The attack suite's attackers (a ``SuiteSpec``; its criteria are replaced by the
            tuner's); ``None``: the suite's defaults.

    Returns:
        ``{"rounds": [...], "stopped": why, "met": bool, "final": test measurement, ...}``.
    """
    # Imported here: the attacks import this module (the reconstruction sweep reads sweep points).
    from dapter_tf.attacks import AttackInputData, SuiteSpec, run_attack_suite

    if tuner.uses_suite:
        suite = dataclasses.replace(suite or SuiteSpec(), criteria=tuner.security_criteria())

    def attack(converter_dir: str, measured_on: ImageSet, folder: str):
        if not tuner.uses_suite:
            return None
        converter_path = os.path.join(converter_dir, runs.CONVERTER_FILE)
        data = AttackInputData(
            task, train_set, measured_on, converter_path, config.target_path, config.data, config.target_contract
        )
        return run_attack_suite(data, suite, folder)

    if cluster.is_chief():  # In a cluster, the chief alone writes (dapter_tf.cluster).
        os.makedirs(workdir, exist_ok=True)
    rounds, tried = [], []
    lambda_, init = tuner.start, config.init_converter
    log = {"task": task.description, "target": config.target_path, "tuner": dataclasses.asdict(tuner)}
    if suite is not None:
        log["suite"] = dataclasses.asdict(suite)
    stopped, met = f"stopped after max_rounds={tuner.max_rounds} rounds", False
    for k in range(tuner.max_rounds):
        path = os.path.join(workdir, f"round_{k:02d}")
        epochs = tuner.first_epochs if k == 0 else tuner.finetune_epochs
        round_config = dataclasses.replace(config, lambda_=lambda_, epochs=epochs, init_converter=init)
        print(f"== round {k}: lambda {lambda_:.3f}, {epochs} epoch(s) -> {path}", flush=True)
        results = runs.read_results(path) or train.train_dapter(round_config, task, train_set, val_set, path)
        round_suite = attack(path, val_set, os.path.join(path, "suite"))
        secure, usable = judge(results, tuner, round_suite)
        tried.append(lambda_)
        new, why = next_lambda(lambda_, secure, usable, tuner, tried)
        figures = _suite_figures(round_suite)
        rounds.append(_point(lambda_, results, round=k, secure=secure, usable=usable, decision=why, **figures))
        attacked = ""
        if round_suite is not None:
            gap = figures["max_label_gap_points"]
            attacked = f", max SSIM {figures['max_ssim']:.3f}" + (
                "" if gap is None else f", label gap {gap:+.2f} points"
            )
        print(
            f"   round {k}: lambda {lambda_:.3f}: drop {results['accuracy_drop_points']:+.2f} points, entropy "
            f"{results['entropy_converted']:.2f} bits ({100 * results['entropy_ratio']:.1f} %){attacked} -> {why}",
            flush=True,
        )
        if cluster.is_chief():
            files.write_json(os.path.join(workdir, TUNER_FILE), {**log, "rounds": rounds})
        if new is None:
            stopped, met = why, secure and usable
            break
        lambda_, init = new, os.path.join(path, runs.CONVERTER_FILE)
    final_path = os.path.join(workdir, f"round_{rounds[-1]['round']:02d}")
    target = models.load_target(config.target_path, config.target_contract)
    final = evaluate.evaluate_converter(
        models.load_converter(final_path), target, test_set.images, test_set.labels[task.target_label]
    )
    final_suite = attack(final_path, test_set, os.path.join(workdir, "final_suite"))
    final_secure, final_usable = judge(final, tuner, final_suite)
    final.update(_suite_figures(final_suite))
    log.update(
        rounds=rounds,
        stopped=stopped,
        met=met,
        final_round=rounds[-1]["round"],
        final_lambda=rounds[-1]["lambda"],
        final_converter=os.path.join(final_path, runs.CONVERTER_FILE),
        final={**final, "secure": final_secure, "usable": final_usable},
    )
    if cluster.is_chief():
        files.write_json(os.path.join(workdir, TUNER_FILE), log)
    return log


def summarize_sweep(points) -> str:
    """A plain-text table of a sweep, for logs and the README."""
    lines = ["lambda  acc(converted)  drop(points)  entropy(bits)  ratio"]
    for p in points:
        lines.append(
            f"{p['lambda']:6.3f}  {p['accuracy_converted']:14.4f}  {p['accuracy_drop_points']:12.2f}  "
            f"{p['entropy_converted']:13.2f}  {p['entropy_ratio']:5.3f}"
        )
    return "\n".join(lines)
