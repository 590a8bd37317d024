"""The converters for phones beside the Fig. 3 converter: pairs of recipes that differ only in the architecture.

Issue 32: a form that is cheaper on phones (``fig3_patches``, the block encoder) may replace Fig. 3 in
the protective recipes only where, trained the same way, it loses at most ``MAX_EXTRA_DROP_POINTS``
more and its strongest attacker's SSIM is no higher. ``bench/bench_efficient_forms.py`` trains each
pair and runs the attack suite on both (``protection.run_frontier``); this module names the pairs and
judges them. The patch form may also be trained at other lambdas than Fig. 3's (``form_lambdas``):
the same form elsewhere on its entropy-accuracy frontier, each judged against the same Fig. 3.
"""

from dapter_tf.analysis import protection, recipe_search
from dapter_tf.errors import DapterError

# How much more a cheaper form may lose than Fig. 3, in points (issue 32, acceptance 2).
MAX_EXTRA_DROP_POINTS = 1.0
PAIRS = ("patches", "split", "block")


def pair_recipes(pairs, block: int, side: int, form_lambdas=(), lambda_: float | None = None, patch: int = 4) -> list:
    """The ``protection.Recipe`` of each pair, Fig. 3 first in each; the epochs are the base config's.

    ``patches``: the base config (L_dap) on Fig. 3 (24/48/96) and on its patch form (48/96/192) on
    ``patch`` x ``patch`` pixel patches (named ``fig3_patches``, or ``fig3_patches<patch>`` for other
    sides than 4), then the patch form at each of ``form_lambdas`` (``<name>_lambda<value>``), none of
    them the base config's ``lambda_``.
    ``split``: the same with the split form (``fig3_split``, ``fig3_split<patch>``; Fig. 3 once if
    both pairs are asked for).
    ``block``: ``dapter-protect``'s wide rung at blocks of ``block`` (``recipe_search.build_ladder``
    for ``side``-pixel images) on Fig. 3 with output blocks and on the block encoder.

    Raises:
        DapterError: on an unknown or missing pair, a block the ladder lacks, or ``form_lambdas``
            without the patches pair, repeating a value or ``lambda_``.
    """
    from dapter_tf.models.converter import PATCH, PATCH_FILTERS

    unknown = [p for p in pairs if p not in PAIRS]
    if unknown or not pairs:
        raise DapterError(f"--pairs takes any of {', '.join(PAIRS)}, got {','.join(pairs) or 'nothing'}")
    if form_lambdas and "patches" not in pairs and "split" not in pairs:
        raise DapterError("--form_lambdas trains the patch forms at other lambdas: it needs --pairs=patches or split")
    if len(set(form_lambdas)) != len(form_lambdas):
        raise DapterError(f"--form_lambdas repeats a value: {','.join(f'{v:g}' for v in form_lambdas)}")
    if lambda_ in form_lambdas:
        raise DapterError(f"--form_lambdas={lambda_:g} repeats --lambda_: the pair trains the patch form at it")
    recipes = []
    forms = [a for p, a in (("patches", "fig3_patches"), ("split", "fig3_split")) if p in pairs]
    if forms:
        recipes.append(protection.Recipe("fig3", {"architecture": "fig3"}))
    for architecture in forms:
        form = {"architecture": architecture, "filters": PATCH_FILTERS, "patch": patch}
        name = architecture if patch == PATCH else f"{architecture}{patch}"
        recipes.append(protection.Recipe(name, form))
        recipes += [protection.Recipe(f"{name}_lambda{v:g}", {**form, "lambda_": v}) for v in form_lambdas]
    if "block" in pairs:
        rungs = {r.name: r for r in recipe_search.build_ladder(side)}
        if f"b{block}_wide" not in rungs:
            raise DapterError(f"--block={block} is not a code of dapter-protect's ladder for {side}x{side} images")
        code = {k: v for k, v in rungs[f"b{block}_wide"].recipe.overrides.items() if k != "epochs"}
        recipes += [
            protection.Recipe(f"fig3_b{block}", {**code, "architecture": "fig3"}),
            protection.Recipe(f"encoder_b{block}", code),
        ]
    return recipes


def compare_forms(points: list[dict]) -> list[dict]:
    """Each cheaper form beside its Fig. 3 point: the two verdicts.

    Args:
        points: Frontier points in ``pair_recipes`` order; each form is judged against the last
            Fig. 3 point before it (``architecture`` ``fig3`` in its recipe).
    """
    rows, fig3 = [], None
    for form in points:
        if form["recipe"].get("architecture") == "fig3":
            fig3 = form
            continue
        extra = form["accuracy_drop_points"] - fig3["accuracy_drop_points"]
        error = (fig3["accuracy_drop_error_points"] ** 2 + form["accuracy_drop_error_points"] ** 2) ** 0.5
        rows.append(
            {
                "fig3": fig3["name"],
                "form": form["name"],
                "lambda_fig3": fig3["lambda"],
                "lambda_form": form["lambda"],
                "entropy_ratio_fig3": fig3["entropy_ratio"],
                "entropy_ratio_form": form["entropy_ratio"],
                "extra_drop_points": extra,
                "extra_drop_error_points": error,
                "accuracy_holds": extra <= MAX_EXTRA_DROP_POINTS,
                "ssim_fig3": fig3["max_ssim"],
                "ssim_form": form["max_ssim"],
                "ssim_mean_image": form["ssim_mean_image"],
                "ssim_holds": form["max_ssim"] <= fig3["max_ssim"],
            }
        )
    return rows


def forms_table(rows: list[dict]) -> str:
    """The verdicts as a markdown table."""
    lines = [
        "| Fig. 3 | cheaper form | λ, Fig. 3 / form | entropy ratio, Fig. 3 / form | extra points lost (bar: at "
        "most 1) | strongest SSIM, Fig. 3 | strongest SSIM, form (bar: no higher) | mean image SSIM |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        verdict = "holds" if r["accuracy_holds"] else "missed"
        ssim = "holds" if r["ssim_holds"] else "missed"
        lines.append(
            f"| {r['fig3']} | {r['form']} | {r['lambda_fig3']:g} / {r['lambda_form']:g} | "
            f"{r['entropy_ratio_fig3']:.1%} / {r['entropy_ratio_form']:.1%} | "
            f"{r['extra_drop_points']:+.2f} ± {r['extra_drop_error_points']:.2f}: {verdict} | "
            f"{r['ssim_fig3']:.3f} | {r['ssim_form']:.3f}: {ssim} | {r['ssim_mean_image']:.3f} |"
        )
    return "\n".join(lines) + "\n"
