"""The protection frontier: what each training recipe costs the target, and what it leaves the attack suite.

A recipe is a converter training (L_dap alone at some lambda, or with the defences of
``dapter_tf.defences``), written ``name: field=value field=value`` over ``train.DapterConfig``'s
fields. ``run_frontier`` trains one converter per recipe and runs the attack suite on each
(``attacks.run_attack_suite``), one folder per recipe, each resumable; the frontier is every recipe's
accuracy drop beside the suite's strongest reconstruction SSIM and its labelling gap, as JSON, a
Markdown table and a plot.
"""

import dataclasses
import json
import os

from dapter_tf import train
from dapter_tf.errors import DapterError
from dapter_tf.figures import pyplot, save_figure
from dapter_tf.records import files, runs

FRONTIER_FILE = "frontier.json"
TABLE_FILE = "frontier.md"
PLOT_FILE = "frontier.png"

# Recipe fields: DapterConfig's own, and the adversary's as adversary_<field>.
_FIELDS = {
    "lambda_": float,
    "epochs": int,
    "learning_rate": float,
    "cosine_decay": lambda v: {"true": True, "false": False}[v.lower()],
    "output_block": int,
    "output_step": int,
    "filters": lambda v: tuple(int(c) for c in v.split("/")),
    "acc_labels": str,
    "class_code": str,
    "architecture": str,
    "patch": int,
    "task_head": float,
    "validation_images": int,
    "augment": lambda v: {"true": True, "false": False}[v.lower()],
}
_ADVERSARY_FIELDS = {
    "adversary_weight": ("weight", float),
    "adversary_decoders": ("decoders", int),
    "adversary_restart_every": ("restart_every", int),
    "adversary_steps": ("decoder_steps", int),
    "adversary_learning_rate": ("learning_rate", float),
    "adversary_filters": ("filters", lambda v: tuple(int(c) for c in v.split("/"))),
}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One converter training of the frontier.

    Attributes:
        name: Its folder and its label in the table and plot (letters, digits, ``._-``).
        overrides: Field -> value over the frontier's base ``DapterConfig`` (``_FIELDS`` and
            ``adversary_*``).
        family: Which line of the plot it belongs to: ``L_dap`` (no defence), ``adversarial``,
            ``coarse code``, ``both`` or ``class code``, from its overrides.
    """

    name: str
    overrides: dict

    @property
    def family(self) -> str:
        # The class code sends no image of the photo at all, so it is a family of its own
        # whatever else the recipe sets.
        if self.overrides.get("class_code"):
            return "class code"
        adversarial = self.overrides.get("adversary_weight", 0) > 0
        coarse = self.overrides.get("output_block", 1) > 1
        return {(False, False): "L_dap", (True, False): "adversarial", (False, True): "coarse code"}.get(
            (adversarial, coarse), "both"
        )

    def apply(self, base: train.DapterConfig) -> train.DapterConfig:
        """``base`` with this recipe's fields (validated by the config).

        Raises:
            DapterError: on a field no recipe may set: dropping it would train another converter than
                the recipe names, and say nothing.
        """
        unknown = sorted(k for k in self.overrides if k not in _FIELDS and k not in _ADVERSARY_FIELDS)
        if unknown:
            raise DapterError(
                f"recipe {self.name!r} sets {', '.join(unknown)}, which no recipe may set "
                f"(known: {', '.join(sorted({**_FIELDS, **_ADVERSARY_FIELDS}))})"
            )
        plain = {k: v for k, v in self.overrides.items() if k in _FIELDS}
        adversary = {_ADVERSARY_FIELDS[k][0]: v for k, v in self.overrides.items() if k in _ADVERSARY_FIELDS}
        values = dataclasses.replace(base.adversary, **adversary) if adversary else base.adversary
        return dataclasses.replace(base, adversary=values, **plain)


def parse_recipe(text: str) -> Recipe:
    """Parses ``name: field=value field=value`` (``filters=48/96/192``; no fields: the base config).

    Raises:
        DapterError: on a missing name, an unknown field or a value of the wrong type.
    """
    name, sep, body = text.partition(":")
    name = name.strip()
    if not sep or not name or not all(c.isalnum() or c in "._-" for c in name):
        raise DapterError(f"a recipe is 'name: field=value ...' with a plain name, got {text!r}")
    overrides = {}
    for item in body.split():
        field, eq, value = item.partition("=")
        parse = _FIELDS.get(field) or (_ADVERSARY_FIELDS[field][1] if field in _ADVERSARY_FIELDS else None)
        if not eq or parse is None:
            known = ", ".join([*_FIELDS, *_ADVERSARY_FIELDS])
            raise DapterError(f"recipe {name}: {item!r} is not field=value with a field of: {known}")
        try:
            overrides[field] = parse(value)
        except (ValueError, KeyError):
            raise DapterError(f"recipe {name}: {field}={value!r} is not a valid value") from None
    return Recipe(name, overrides)


def check_recipes(recipes, base: train.DapterConfig) -> None:
    """Raises DapterError on repeated names, or on a recipe whose config would not validate."""
    names = [r.name for r in recipes]
    if not recipes or len(set(names)) != len(names):
        raise DapterError(f"the frontier needs recipes with distinct names, got {', '.join(names) or 'none'}")
    for recipe in recipes:
        try:
            recipe.apply(base)
        except DapterError as e:
            raise DapterError(f"recipe {recipe.name}: {e}") from None


def frontier_point(recipe: Recipe, config: train.DapterConfig, suite) -> dict:
    """One row of the frontier: the recipe, its config's defences, and the suite's figures."""
    best = suite.strongest_reconstruction
    return {
        "name": recipe.name,
        "family": recipe.family,
        "recipe": recipe.overrides,
        "lambda": config.lambda_,
        "output_block": config.output_block,
        "adversary_weight": config.adversary.weight,
        "epochs": config.epochs,
        "accuracy_original": suite.target_accuracy_original,
        "accuracy_converted": suite.target_accuracy_converted,
        "accuracy_drop_points": suite.accuracy_drop_points,
        "accuracy_drop_error_points": suite.accuracy_drop_error_points,
        "entropy_ratio": suite.entropy_converted / suite.entropy_original,
        "max_ssim": best.ssim if best else None,
        "max_ssim_attacker": best.attacker if best else None,
        "max_psnr": best.psnr if best else None,
        "ssim_mean_image": best.ssim_mean_image if best else None,
        "max_label_gap_points": suite.max_label_gap_points,
        "label_accuracy": max((r.attack_accuracy_converted for r in suite.labelling), default=None),
        "label_bound": min((r.acc_best_given_target for r in suite.labelling), default=None),
        "verdicts": {v.name: v.holds for v in suite.verdicts()},
    }


def run_frontier(
    base: train.DapterConfig, recipes, suite_spec, task, train_set, test_set, workdir: str, title: str = ""
) -> dict:
    """Trains a converter per recipe, runs the attack suite on each, and writes the frontier.

    Each recipe works in ``workdir/<name>/converter`` (``train.train_dapter``) and
    ``workdir/<name>/suite`` (``attacks.run_attack_suite``): a finished recipe is read back, a killed
    one resumes. ``frontier.json``, ``frontier.md`` and ``frontier.png`` are rewritten after every
    recipe.

    Returns:
        ``{"task", "title", "target", "suite", "points": [...]}``.
    """
    from dapter_tf.attacks import AttackInputData, SuiteResults, run_attack_suite
    from dapter_tf.attacks.suite import SUITE_FILE

    check_recipes(recipes, base)
    suite_spec.validate(task)
    os.makedirs(workdir, exist_ok=True)
    frontier = {
        "task": task.description,
        "title": title or task.description,
        "target": base.target_path,
        "base": runs.config_to_dict(base),
        "suite": suite_spec_dict(suite_spec),
        "points": [],
    }
    for i, recipe in enumerate(recipes):
        config = recipe.apply(base)
        converter_dir = os.path.join(workdir, recipe.name, "converter")
        suite_dir = os.path.join(workdir, recipe.name, "suite")
        saved = os.path.join(suite_dir, SUITE_FILE)
        print(f"== recipe {recipe.name} ({i + 1}/{len(recipes)}): {recipe.overrides or 'the base config'}", flush=True)
        trained = os.path.isfile(os.path.join(converter_dir, "results.json"))
        if trained:
            runs.prepare_workdir(converter_dir, config)  # A converter of another recipe fails here.
        if trained and os.path.isfile(saved):
            check_suite_spec(suite_dir, frontier["suite"])
            suite = SuiteResults.load(saved)
            print(f"   done before, read from {suite_dir}", flush=True)
        else:
            write_suite_spec(suite_dir, frontier["suite"])
            if not trained:
                train.train_dapter(config, task, train_set, test_set, converter_dir)
            converter_path = os.path.join(converter_dir, runs.CONVERTER_FILE)
            input_data = AttackInputData(
                task, train_set, test_set, converter_path, base.target_path, base.data, base.target_contract
            )
            suite = run_attack_suite(input_data, suite_spec, suite_dir)
        frontier["points"].append(frontier_point(recipe, config, suite))
        write_frontier(frontier, workdir)
    return frontier


# Beside each recipe's suite.json: the attackers that measured it, so that a frontier never reads
# back a point measured by other (weaker, or stronger) attackers than its own.
SUITE_SPEC_FILE = "suite_spec.json"


def suite_spec_dict(spec) -> dict:
    """A ``SuiteSpec`` as the plain dict written beside each point's suite (``SUITE_SPEC_FILE``)."""
    return dataclasses.asdict(spec)


def write_suite_spec(suite_dir: str, spec: dict) -> None:
    path = os.path.join(suite_dir, SUITE_SPEC_FILE)
    if os.path.isfile(path):
        check_suite_spec(suite_dir, spec)
        return
    os.makedirs(suite_dir, exist_ok=True)
    files.write_json(path, spec)


def check_suite_spec(suite_dir: str, spec: dict) -> None:
    """Raises DapterError when the suite of ``suite_dir`` was run with other attackers than ``spec``."""
    path = os.path.join(suite_dir, SUITE_SPEC_FILE)
    if not os.path.isfile(path):
        raise DapterError(
            f"{suite_dir}: suite results without {SUITE_SPEC_FILE}: cannot tell which attackers measured them; "
            "remove the folder to measure the recipe again"
        )
    with open(path) as f:
        saved = json.load(f)
    expected = json.loads(json.dumps(spec))  # as written to disk: tuples become lists
    if saved != expected:
        changed = sorted(k for k in set(saved) | set(expected) if saved.get(k) != expected.get(k))
        raise DapterError(
            f"{suite_dir}: measured by another attack suite (differs in {', '.join(changed)}); "
            "use another --workdir or remove the folder"
        )


def frontier_table(frontier: dict) -> str:
    """The frontier as a Markdown table, one row per recipe."""
    lines = [
        "| recipe | family | λ | block | μ | accuracy drop, points | entropy ratio | strongest reconstruction SSIM "
        "(attacker) | mean image SSIM | labelling gap, points | verdicts |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in frontier["points"]:
        drop = "—" if p["accuracy_drop_points"] is None else (
            f"{p['accuracy_drop_points']:+.2f} ± {p['accuracy_drop_error_points']:.2f}"
        )  # fmt: skip
        gap = "—" if p["max_label_gap_points"] is None else f"{p['max_label_gap_points']:+.2f}"
        verdicts = ", ".join(
            f"{k} {({True: 'holds', False: 'missed', None: 'n/a'})[v]}" for k, v in p["verdicts"].items()
        )
        lines.append(
            f"| {p['name']} | {p['family']} | {p['lambda']:g} | {p['output_block']} | {p['adversary_weight']:g} | "
            f"{drop} | {p['entropy_ratio']:.1%} | {p['max_ssim']:.3f} ({p['max_ssim_attacker']}) | "
            f"{p['ssim_mean_image']:.3f} | {gap} | {verdicts} |"
        )
    return "\n".join(lines)


_FAMILY_STYLE = {"L_dap": "o-", "adversarial": "s-", "coarse code": "^-", "both": "D-", "class code": "*-"}


def plot_frontier(frontier: dict, path: str, criteria=None) -> None:
    """Draws accuracy drop against the strongest reconstruction SSIM (and the labelling gap, where measured).

    One line per family of recipes; the mean image's SSIM and the criteria's bars are drawn as
    lines, the corner that meets both as a shaded box.
    """
    plt = pyplot()
    points = frontier["points"]
    with_gap = any(p["max_label_gap_points"] is not None for p in points)
    fig, axes = plt.subplots(1, 2 if with_gap else 1, figsize=(11 if with_gap else 6, 4), dpi=120, squeeze=False)
    panels = [("max_ssim", "strongest reconstruction SSIM (held-out images)")]
    if with_gap:
        panels.append(("max_label_gap_points", "labelling gap over the bound, points"))
    for ax, (key, label) in zip(axes[0], panels):
        for family, style in _FAMILY_STYLE.items():
            members = [p for p in points if p["family"] == family and p[key] is not None]
            members.sort(key=lambda p: p["accuracy_drop_points"])
            if not members:
                continue
            x = [p["accuracy_drop_points"] for p in members]
            y = [p[key] for p in members]
            ax.plot(x, y, style, label=family, ms=5, lw=1)
            for p, xi, yi in zip(members, x, y):
                ax.annotate(p["name"], (xi, yi), fontsize=6, xytext=(3, 3), textcoords="offset points")
        drop_bar = criteria.max_drop_points if criteria else 3.0
        ax.axvline(drop_bar, color="tab:green", ls="--", lw=0.8, label=f"accuracy drop {drop_bar:g} points")
        if key == "max_ssim":
            mean_image = next((p["ssim_mean_image"] for p in points if p["ssim_mean_image"] is not None), None)
            if mean_image is not None:
                ax.axhline(mean_image, color="tab:gray", ls=":", lw=1, label="mean training image")
            bars = []
            if criteria is not None and criteria.max_ssim is not None:
                bars.append(criteria.max_ssim)
            if criteria is not None and criteria.max_ssim_over_mean_image is not None and mean_image is not None:
                bars.append(mean_image + criteria.max_ssim_over_mean_image)
            for bar in bars:
                ax.axhline(bar, color="tab:green", ls="--", lw=0.8)
            if bars:
                ax.fill_between([min(0, ax.get_xlim()[0]), drop_bar], 0, min(bars), color="tab:green", alpha=0.1)
            ax.set_ylim(0, 1)
        elif criteria is not None and criteria.max_label_gap_points is not None:
            ax.axhline(criteria.max_label_gap_points, color="tab:green", ls="--", lw=0.8)
            ax.axhline(0, color="tab:gray", ls=":", lw=1, label="knowing only the target label")
        ax.set_xlabel("target accuracy drop, points (held-out images)")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle(frontier["title"], fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))  # leaves the title its own row above the axes' labels
    save_figure(fig, path)


def write_frontier(frontier: dict, workdir: str) -> None:
    """Writes ``frontier.json``, ``frontier.md`` and ``frontier.png`` into ``workdir``."""
    from dapter_tf.attacks.suite import SecurityCriteria

    files.write_json(os.path.join(workdir, FRONTIER_FILE), frontier)
    with open(os.path.join(workdir, TABLE_FILE), "w") as f:
        f.write(f"# {frontier['title']}\n\n{frontier_table(frontier)}\n")
    criteria = SecurityCriteria(**frontier["suite"]["criteria"])
    plot_frontier(frontier, os.path.join(workdir, PLOT_FILE), criteria)
