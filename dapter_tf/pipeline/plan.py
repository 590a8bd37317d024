"""The paper's whole evaluation as one resumable plan of steps, each one run of an existing binary.

A step is one command line of a binary of ``experiments/``, ``export/`` or ``bench/`` (the same command
WORKSPACE.md gives for running it by hand), the datasets it reads and the steps whose outputs it uses.
``run_plan`` runs the steps in order as child processes and marks each finished one in
``WORKDIR/steps/``; a rerun skips marked steps, and a step killed half-way is run again, resuming from
its own checkpoints (every training binary resumes from its workdir). Nothing here imports TensorFlow.
"""

import concurrent.futures
import dataclasses
import os
import re
import shlex
import subprocess
import sys

from dapter_tf.errors import DapterError
from dapter_tf.pipeline import cifar_steps, face_steps
from dapter_tf.pipeline.datasets import EMBEDDED
from dapter_tf.pipeline.scales import Scale

# The defended recipe of each task (beyond the paper: docs/protection.md, "Defences"): the best operating point of
# results/protection/ on each task, the one the reference releases of results/release/ were trained
# with (CelebA has no release); the plan trains it for the scale's defended_epochs.
DEFENDED_RECIPES = {
    # Adversarial decoders (mu 1) at the paper's lambda: no coarse code kept a 10-class target usable.
    "cifar10": ("--lambda_=0.9", "--adversary_weight=1", "--cosine_decay"),
    # One colour per 32x32 image, on a wider converter.
    "cifar2_10": ("--lambda_=0.5", "--output_block=32", "--cosine_decay", "--filters=48,96,192"),
    # One colour per 16x16 block, a wider converter, L_acc towards the target's own predictions.
    "celeba": ("--lambda_=0.5", "--output_block=16", "--cosine_decay", "--filters=48,96,192", "--acc_labels=target"),
}


@dataclasses.dataclass(frozen=True)
class Step:
    """One run of one binary.

    Attributes:
        name: Unique, ``<group>/<what>``, e.g. ``cifar10/target``; also its marker and log file names.
        module: The binary, run as ``python -m module``.
        args: Its flags.
        what: The paper's experiment it serves, one line.
        datasets: Datasets it reads (keys of ``DATASET_FILES``, or ``EMBEDDED``).
        after: Steps whose outputs it reads.
        output: The folder that holds all its output and nothing else ("" if it writes into a shared one);
            moved aside when the step must run again from scratch.
    """

    name: str
    module: str
    args: tuple[str, ...]
    what: str
    datasets: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    output: str = ""

    def command(self) -> list[str]:
        return [sys.executable, "-m", self.module, *self.args]

    def as_dict(self) -> dict:
        return {"name": self.name, "command": shlex.join(["python", "-m", self.module, *self.args])}


def build_plan(scale: Scale, data_dir: str, workdir: str, seed: int = 0) -> list[Step]:
    """Lists every step of the paper's evaluation at ``scale``, in an order that respects ``after``.

    Args:
        scale: How big each experiment is.
        data_dir: The folder with ../shared/data's layout.
        workdir: Where each step writes (``workdir/<step name>``).
        seed: Passed to every binary.

    Returns:
        The steps; each writes only under ``workdir``.
    """
    plan = PlanBuilder(scale, data_dir, workdir, seed)
    cifar_steps.add_cifar10(plan)
    cifar_steps.add_cifar10_analysis(plan)
    cifar_steps.add_benchmarks(plan)
    cifar_steps.add_cifar2_10(plan)
    if scale.face_datasets:
        face_steps.add_celeba(plan)
        face_steps.add_celeba_table4(plan)
        face_steps.add_lfw(plan)
    return plan.steps


class PlanBuilder:
    """What every step of a plan shares (data flags, the suite's flags, ``add``); ``cifar_steps`` and
    ``face_steps`` add the steps of each dataset."""

    def __init__(self, scale: Scale, data_dir: str, workdir: str, seed: int):
        s = self.scale = scale
        self.data_dir, self.workdir, self.seed_flag = data_dir, workdir, f"--seed={seed}"
        self.steps = []
        self.limits = [f"--max_test={s.max_test}"] if s.max_test else []
        if s.cifar_source == EMBEDDED:
            self.cifar = ["--source=embedded", *self.limits]
            self.cifar_data = (EMBEDDED,)
        else:
            self.cifar = [
                "--source=npz",
                f"--train_npz={os.path.join(data_dir, 'cifar10/train_20k.npz')}",
                f"--test_npz={os.path.join(data_dir, 'cifar10/test.npz')}",
                *self.limits,
            ]
            self.cifar_data = ("cifar10",)
        if s.max_train:
            self.cifar.append(f"--max_train={s.max_train}")
        self.width = [f"--width={s.target_width}"] if s.target_width else []
        self.ssim_recon = [f"--recon_epochs={s.ssim_recon_epochs}", f"--recon_train_images={s.ssim_recon_train_images}"]
        self.suite = [
            "--suite_reconstruction=symmetric,unet,lookup",
            f"--suite_symmetric_epochs={s.recon_epochs}",
            f"--suite_unet_epochs={s.suite_unet_epochs}",
            f"--suite_recon_train_images={s.recon_train_images}",
            f"--suite_pretrain_epochs={s.pretrain_epochs}",
            f"--suite_finetune_epochs={s.finetune_epochs}",
        ]
        self.face = [f"--image_size={s.face_size}", *self.limits]

    def w(self, name: str) -> str:  # Short: the plan reads better with it.
        return os.path.join(self.workdir, name)

    def target(self, group: str) -> str:
        return self.w(f"{group}/target/target.keras")

    def add(self, name, module, args, what, datasets=None, after=(), seeded=True):
        datasets = self.cifar_data if datasets is None else datasets
        args = tuple(args) + ((self.seed_flag,) if seeded else ())
        # Each step's --workdir or --output_dir is its own folder, named after it, unless shared (bandwidth/).
        own = [a.split("=", 1)[1] for a in args if a.startswith(("--workdir=", "--output_dir="))]
        output = own[0] if own and own[0] == self.w(name) else ""
        self.steps.append(Step(name, module, args, what, tuple(datasets), tuple(after), output))

    def add_target_and_converter(self, group, data, datasets, target_epochs, dapter_epochs, extra=()):
        self.add(
            f"{group}/target",
            "experiments.train_target",
            [
                *data,
                f"--model={self.scale.target_model}",
                *self.width,
                f"--epochs={target_epochs}",
                *extra,
                f"--workdir={self.w(group + '/target')}",
            ],
            "§6 Table 2: the target (DLIS) model, trained on original images",
            datasets,
        )
        self.add(
            f"{group}/dapter",
            "experiments.train_dapter",
            [
                *data,
                f"--target={self.target(group)}",
                "--lambda_=0.9",
                f"--epochs={dapter_epochs}",
                *extra,
                f"--workdir={self.w(group + '/dapter')}",
            ],
            "§4, §7.1: the converter at lambda 0.9 (accuracy drop, entropy, bandwidth)",
            datasets,
            [f"{group}/target"],
        )

    def add_protection(self, group, data, datasets, extra_suite=(), after=()):
        """The attack suite on the paper's converter, and a converter of the defended recipe with its suite."""
        for converter, recipe in ((f"{group}/dapter", None), (f"{group}/defended", DEFENDED_RECIPES[group])):
            if recipe is not None:
                self.add(
                    converter,
                    "experiments.train_dapter",
                    [
                        *data,
                        f"--target={self.target(group)}",
                        *recipe,
                        f"--epochs={self.scale.defended_epochs}",
                        f"--workdir={self.w(converter)}",
                    ],
                    "beyond the paper: the defended recipe (coarse output code and adversarial decoders)",
                    datasets,
                    [f"{group}/target"],
                )
            name = f"{group}/suite" if recipe is None else f"{group}/defended_suite"
            self.add(
                name,
                "experiments.attack_suite",
                [
                    *data,
                    *self.suite,
                    *extra_suite,
                    f"--target={self.target(group)}",
                    f"--converter={self.w(converter)}",
                    f"--workdir={self.w(name)}",
                ],
                "§5.3, §7.3.3 Fig. 13 and beyond: the attack suite (reconstruction and labelling attackers) on "
                + ("the paper's converter at lambda 0.9" if recipe is None else "the defended converter"),
                datasets,
                [converter, *after],
            )


def select_steps(plan: list[Step], names: list[str]) -> list[Step]:
    """Keeps the steps named (a name or a group such as ``cifar10``) and every step they need."""
    if not names:
        return plan
    by_name = {step.name: step for step in plan}
    wanted = set()
    for name in names:
        matched = [step.name for step in plan if step.name == name or step.name.startswith(name.rstrip("/") + "/")]
        if not matched:
            raise DapterError(f"--steps: no step or group {name!r} in this plan; its steps are: {', '.join(by_name)}")
        wanted.update(matched)
    pending = list(wanted)
    while pending:
        for needed in by_name[pending.pop()].after:
            if needed not in wanted:
                wanted.add(needed)
                pending.append(needed)
    return [step for step in plan if step.name in wanted]


def defined_flags(module: str, cwd: str) -> set[str]:
    """The flags a binary defines, read from its own ``--helpfull`` (run as ``python -m module`` in ``cwd``)."""
    out = subprocess.run(
        [sys.executable, "-m", module, "--helpfull"], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    return set(re.findall(r"^\s+(?:-\?,)?--(?:\[no\])?(\w+)", out.stdout, re.M))


def undefined_flags(plan: list[Step], cwd: str) -> list[str]:
    """Every flag of a step that its binary does not define, as ``step: --flag`` (empty: the plan is sound).

    Each binary's definitions are its own (``defined_flags``), so a flag renamed in a binary is
    caught here, before any step runs, rather than by the step that uses it hours into a run.
    """
    modules = sorted({step.module for step in plan})
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        flags = dict(zip(modules, pool.map(lambda m: defined_flags(m, cwd), modules)))
    missing = []
    for step in plan:
        for arg in step.args:
            name = arg[2:].split("=", 1)[0]
            if not (name in flags[step.module] or (name.startswith("no") and name[2:] in flags[step.module])):
                missing.append(f"{step.name}: {arg.split('=', 1)[0]}")
    return missing
