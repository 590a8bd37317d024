"""The reproduction report: every headline claim of the paper beside what a ``reproduce`` run measured.

``build_claims`` reads the JSON files the plan's steps wrote (``pipeline.plan``) and returns one
``Claim`` per row of the paper's headline table (DESIGN.md), each with the paper's figure, ours and a
verdict: met, missed by how much, or not run and why. ``write_report`` writes ``report.md`` with those
rows, the run's scale, data, seed, commit and steps, and copies the figures beside it. Only CIFAR-10
figures and the bandwidth plot (byte ratios, as results/bandwidth/ commits) are copied: CelebA and LFW
faces, and the other plots drawn from them, stay in the workdir (their licences forbid redistribution,
and the report is committed).
"""

import dataclasses
import json
import os
import shutil

from dapter_tf.pipeline.paper_claims import Claim, load_json, strongest_attack

# Figures a run's steps draw, copied into the report: (source under the workdir, name in the report, caption).
FIGURES = (
    ("cifar10/sweep/sweep.png", "fig8_sweep.png", "Fig. 8: accuracy and entropy against λ (CIFAR-10)"),
    ("cifar10/sweep/frontier.png", "fig8_frontier.png", "Fig. 8: accuracy drop against entropy ratio"),
    ("cifar10/tune/frontier.png", "tuner_frontier.png", "§7.1 tuner: the rounds on the frontier"),
    ("cifar10/ssim_sweep/ssim_lambda.png", "fig9b_ssim_lambda.png", "Fig. 9(b): reconstruction SSIM against λ"),
    ("cifar10/dapter/grid.png", "converted_cifar10.png", "CIFAR-10 originals (top) and converted at λ 0.9"),
    (
        "cifar10/gradcam/attention_label.png",
        "fig10_attention_cifar10.png",
        "Fig. 10: Grad-CAM of the target on originals and converted images (CIFAR-10)",
    ),
    ("cifar2_10/attack/uncorrelated.png", "fig11_cifar2_10.png", "Fig. 11: uncorrelated attack, Cifar2:10"),
    (
        "cifar10/suite/reconstruction_symmetric/grid.png",
        "fig13_reconstruction_cifar10.png",
        "Fig. 13: original, converted and reconstructed by the paper's generator (CIFAR-10, λ 0.9)",
    ),
    (
        "cifar10/suite/reconstruction_unet/grid.png",
        "reconstruction_unet_cifar10.png",
        "The suite's U-Net attacker on the paper's converter (CIFAR-10, λ 0.9)",
    ),
    (
        "cifar10/defended_suite/reconstruction_unet/grid.png",
        "reconstruction_unet_cifar10_defended.png",
        "The suite's U-Net attacker on the defended converter (CIFAR-10)",
    ),
    ("bandwidth/bandwidth.png", "bandwidth.png", "§7.4: bytes of converted against original images"),
)
# How to read the verdicts of a scale smaller than the paper's.
_SCALE_NOTES = {
    "smoke": "The smoke scale checks that every step runs and the report is written; its models are untrained "
    "and its numbers mean nothing.",
    "cpu": "At the cpu scale every model trains for minutes on 8,000 images or fewer (CIFAR-10 target: 8 epochs; "
    "converters: 3 to 4 epochs; attackers: 2 to 3 epochs, 10 on LFW), far from the paper's training, so its "
    "verdicts say where an hour on 2 CPU cores stands; results/ holds longer runs of the same binaries (README, "
    "WORKSPACE.md).",
}
# Figures drawn from CelebA or LFW: the report names them but does not copy them. Like their pictures,
# nothing derived from those datasets goes into a committed report; their numbers are in its tables.
WORKDIR_ONLY_FIGURES = (
    ("celeba/table4/cross_converter.png", "Table 4: importance of each CelebA target under every converter"),
    ("lfw/attack/uncorrelated.png", "Fig. 11: uncorrelated attack, LFW gender → identity"),
    ("celeba/attack/correlated.png", "Fig. 12: correlated attributes, CelebA gender target"),
)

# The protection table: the attack suite on each task's converters, the paper's and the defended one.
PROTECTION = (
    ("cifar10", "CIFAR-10"),
    ("cifar2_10", "Cifar2:10"),
    ("celeba", "CelebA Male"),
)


def _protection_section(workdir: str) -> list[str]:
    """The attack suite's verdicts on every task, for L_dap (the paper) and the defended recipe."""
    rows = []
    for group, name in PROTECTION:
        for suite_dir, recipe in (("suite", "L_dap, λ 0.9 (the paper)"), ("defended_suite", "defended recipe")):
            suite = load_json(workdir, f"{group}/{suite_dir}/suite.json")
            if not suite or not suite.get("reconstruction"):
                continue
            attacker, ssim, mean_image = strongest_attack(suite)
            gap = suite.get("max_label_gap_points")
            drop = suite.get("accuracy_drop_points")
            verdicts = ", ".join(
                f"{v['name']} {({True: 'holds', False: 'missed', None: 'n/a'})[v['holds']]}" for v in suite["verdicts"]
            )
            rows.append(
                [
                    name,
                    recipe,
                    "—" if drop is None else f"{drop:+.2f} ± {suite['accuracy_drop_error_points']:.2f}",
                    f"{suite['entropy_converted'] / suite['entropy_original']:.1%}",
                    f"{ssim:.3f} ({attacker})",
                    f"{mean_image:.3f}",
                    "—" if gap is None else f"{gap:+.2f}",
                    verdicts,
                ]
            )
    if not rows:
        return []
    lines = [
        "",
        "## Protection against learned attackers (the attack suite; beyond the paper)",
        "",
        "Every attacker trained after the converter froze, on converted images of its own training split, and was "
        "measured on held-out images (`dapter-attack-suite`). The labelling gap is the best labelling attacker's "
        "accuracy over that of knowing only the target label, in points.",
        "",
    ]
    lines += _table(
        [
            "task",
            "converter",
            "accuracy drop, points",
            "entropy ratio",
            "strongest reconstruction SSIM",
            "mean image SSIM",
            "labelling gap",
            "verdicts",
        ],
        rows,
    )
    return lines


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _sections(workdir: str) -> list[str]:
    """The other tables of the paper the run measured: Fig. 8's points, the tuner, Table 4."""
    lines = []
    sweep = load_json(workdir, "cifar10/sweep/sweep.json")
    if sweep:
        lines += ["", "## Fig. 8: the λ sweep (CIFAR-10)", ""]
        lines += _table(
            ["λ", "accuracy (original → converted)", "drop, points", "entropy ratio", "PNG saving"],
            [
                [
                    f"{p['lambda']:g}",
                    f"{p['accuracy_original']:.4f} → {p['accuracy_converted']:.4f}",
                    f"{p['accuracy_drop_points']:+.2f}",
                    f"{p['entropy_ratio']:.1%}",
                    f"{p['bandwidth_saving']:.2f}×",
                ]
                for p in sweep["points"]
            ],
        )
    tuner = load_json(workdir, "cifar10/tune/tuner.json")
    if tuner:
        f = tuner["final"]
        lines += ["", "## §7.1 tuning strategy (CIFAR-10)", ""]
        lines += _table(
            ["round", "λ", "drop, points", "entropy ratio", "decision"],
            [
                [
                    r["round"],
                    f"{r['lambda']:.2f}",
                    f"{r['accuracy_drop_points']:+.2f}",
                    f"{r['entropy_ratio']:.1%}",
                    r.get("decision", ""),
                ]
                for r in tuner["rounds"]
            ],
        )
        lines += [
            "",
            f"Final λ {tuner['final_lambda']:.2f} ({'both criteria met' if tuner['met'] else 'not met'}):"
            f" drop {f['accuracy_drop_points']:+.2f} points, entropy ratio {f['entropy_ratio']:.1%} on "
            f"{f['images']} other held-out images.",
        ]
    ssim = load_json(workdir, "cifar10/ssim_sweep/ssim_sweep.json")
    if ssim and ssim.get("points"):
        lines += ["", "## Fig. 9(b): reconstruction SSIM against λ (CIFAR-10)", ""]
        lines += _table(
            ["λ", "SSIM", "PSNR, dB", "SSIM of the mean training image"],
            [
                [f"{p['lambda']:g}", f"{p['ssim']:.3f}", f"{p['psnr']:.2f}", f"{p['ssim_mean_image']:.3f}"]
                for p in ssim["points"]
            ],
        )
        lines += [
            "",
            "An attack that does not beat the mean training image has learnt nothing. At λ = 0 the converter hides "
            "little, so a low SSIM there means the attacker was too small or trained too briefly at this scale.",
        ]
    table4 = load_json(workdir, "celeba/table4/gradcam.json")
    if table4:
        cross = table4["cross_converter"]
        names = cross["names"]
        lines += [
            "",
            "## Table 4: importance under every converter (CelebA)",
            "",
            "Mean Grad-CAM importance V_D of each target (row) on each converter's images (column), "
            "normalised by the target's own converter; the paper's claim is that each target keeps its "
            "importance only under its own converter (the diagonal).",
            "",
        ]
        lines += _table(
            ["target \\ converter", *names, "own / best other"],
            [
                [n, *(f"{v:.3g}" for v in row), f"{m:.2f}×"]
                for n, row, m in zip(names, cross["normalized"], cross["margins"])
            ],
        )
        diagonal = all(m > 1 for m in cross["margins"])
        lines += ["", f"Diagonal largest in every row: {'yes' if diagonal else 'no'}."]
    lines += _protection_section(workdir)
    attention = os.path.join(workdir, "cifar10/gradcam/summary.txt")
    if os.path.exists(attention):
        with open(attention) as f:
            lines += ["", "## §7.2 attention consistency (CIFAR-10)", "", "```", f.read().strip(), "```"]
    return lines


def _header(r: dict, plan: list, status: dict) -> list[str]:
    """The report's head: the run's command, scale, data, seed, commit and machine, then the claims' heading."""
    seconds = sum(s.get("seconds", 0.0) for s in status.values())
    return [
        f"# DAPter reproduction report: scale {r['scale']}",
        "",
        f"- command: `{r['command']}`",
        f"- scale: {r['scale']}: {r['scale_description']}",
        f"- data: {r['data_dir']} ({', '.join(f'{k}: {v}' for k, v in r['datasets'].items())})",
        f"- seed: {r['seed']}",
        f"- commit: {r['commit']}"
        + (f" (resumed; earlier runs: {', '.join(r['commits'][:-1])})" if len(r.get("commits", [])) > 1 else ""),
        f"- machine: {r['machine']}",
        *(
            [f"- report rewritten from the workdir by commit {r['report_commit']}"]
            if r.get("report_commit") and r["report_commit"] != r["commit"]
            else []
        ),
        f"- steps: {sum(s['status'] in ('done', 'ran') for s in status.values())} of {len(plan)} finished, "
        f"{seconds / 60:.1f} min of step time in all (each step's last run)"
        + (f"; this invocation took {r['wall_seconds'] / 60:.1f} min" if r.get("wall_seconds") else ""),
        "",
        "## The paper's headline claims",
        "",
        "Verdicts compare our figure with the paper's as stated; `not run` says why."
        + (f" {_SCALE_NOTES[r['scale']]}" if r["scale"] in _SCALE_NOTES else ""),
        "",
    ]


def _steps_section(workdir: str, r: dict, plan: list, status: dict) -> list[str]:
    """The report's last section: every step's status, time and command, with host paths as WORKDIR and DATA."""
    lines = [
        "",
        "## Steps",
        "",
        f"Each step is one binary run; WORKDIR is the run's --workdir, DATA is {r['data_dir']}.",
    ]
    lines += [""]
    # Machine-specific folders read as WORKDIR and DATA, so that the committed report names no host path.
    paths = {os.path.abspath(workdir): "WORKDIR", os.path.abspath(r["data_dir"]): "DATA"}

    def _portable(command: str) -> str:
        for path, name in paths.items():
            command = command.replace(path, name)
        return command

    lines += _table(
        ["step", "status", "time", "command"],
        [
            [
                step.name,
                status.get(step.name, {}).get("status", "not run")
                + (f": {status[step.name]['reason']}" if status.get(step.name, {}).get("reason") else ""),
                f"{status.get(step.name, {}).get('seconds', 0.0) / 60:.1f} min",
                "`" + _portable(step.as_dict()["command"]) + "`",
            ]
            for step in plan
        ],
    )
    return lines


def write_report(
    report_dir: str, workdir: str, plan_record: dict, plan: list, status: dict, claims: list[Claim]
) -> str:
    """Writes ``report_dir/report.md`` and ``report.json`` and copies the run's figures; returns report.md's path.

    Args:
        report_dir: Where the report goes (created).
        workdir: The run's folder.
        plan_record: Scale, data, seed, commit, command and machine of the run (``plan.json``).
        plan: The run's steps (``pipeline.Step``).
        status: ``run_plan``'s return value.
        claims: ``build_claims``'s rows.
    """
    os.makedirs(report_dir, exist_ok=True)
    copied = []
    for source, name, caption in FIGURES:
        path = os.path.join(workdir, source)
        if os.path.exists(path):
            shutil.copyfile(path, os.path.join(report_dir, name))
            copied.append((name, caption))
    r = plan_record
    lines = _header(r, plan, status)
    lines += _table(
        ["#", "claim", "paper", "ours", "verdict"],
        [[i, c.claim, c.paper, c.ours, c.verdict] for i, c in enumerate(claims, 1)],
    )
    lines += ["", "Datasets of the paper not run here:", ""]
    lines += [f"- {name}: {why}." for name, why in r["not_available"].items()]
    lines += _sections(workdir)
    if copied:
        lines += ["", "## Figures", ""]
        lines += [f"![{caption}]({name})\n\n{caption}.\n" for name, caption in copied]
    kept = [
        (source, caption) for source, caption in WORKDIR_ONLY_FIGURES if os.path.exists(os.path.join(workdir, source))
    ]
    if kept:
        lines += ["", "Drawn from CelebA or LFW, so kept in the run's workdir and not copied here:", ""]
        lines += [f"- {caption}: WORKDIR/{source}" for source, caption in kept]
    lines += _steps_section(workdir, r, plan, status)
    path = os.path.join(report_dir, "report.md")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    with open(os.path.join(report_dir, "report.json"), "w") as f:
        json.dump(
            {"run": r, "claims": [dataclasses.asdict(c) for c in claims], "steps": status}, f, indent=2, sort_keys=True
        )
    return path
