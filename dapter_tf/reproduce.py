"""The paper's whole evaluation as one resumable plan of steps, each one run of an existing binary.

A step is one command line of a binary of ``experiments/``, ``export/`` or ``bench/`` (the same command
WORKSPACE.md gives for running it by hand), the datasets it reads and the steps whose outputs it uses.
``run_plan`` runs the steps in order as child processes and marks each finished one in
``WORKDIR/steps/``; a rerun skips marked steps, and a step killed half-way is run again, resuming from
its own checkpoints (every training binary resumes from its workdir). Nothing here imports TensorFlow.
"""

import dataclasses
import datetime
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

from dapter_tf.errors import DapterError

# Files that must exist under the data folder (../shared/data's layout) for a dataset to be run.
DATASET_FILES = {
    "cifar10": ("cifar10/train_20k.npz", "cifar10/test.npz"),
    "celeba": ("celeba/attributes.csv", "celeba/images"),
    "lfw": ("lfw/gray250_min20/labels.csv", "lfw/gray250_min20/images"),
}
# The embedded CIFAR-10 sample ships with dapter_tf: always there.
EMBEDDED = "embedded"
# Datasets of the paper that no plan can run offline, and why (the report lists them).
NOT_AVAILABLE = {
    "Cifar20:100": "no CIFAR-100 copy exists offline (../shared/data has none and tfds cannot download "
    "here); the hierarchical CIFAR-10 task cifar2_10 (vehicle/animal -> 10 classes) stands in for it",
    "ImageNet10, ImageNet8:32": "no ImageNet copy exists here; with one, run the same binaries with "
    "--dataset=imagenet10 or imagenet8_32 --source=folder --data_dir=IMAGENET",
}
# The defended recipe of each task (beyond the paper: README, "Defences"): the best operating point of
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
STEPS_DIR = "steps"
LOGS_DIR = "logs"
EVENTS_FILE = "events.jsonl"
PLAN_FILE = "plan.json"
SUPERSEDED_DIR = "superseded"


@dataclasses.dataclass(frozen=True)
class Scale:
    """How big every experiment of the plan is; see ``SCALES``."""

    name: str
    description: str
    cifar_source: str  # "npz" (../shared/data) or "embedded" (the sample shipped with dapter_tf)
    max_train: int  # CIFAR training images (0: all 20,000 of train_20k.npz)
    max_test: int  # held-out images of every dataset (0: all)
    target_model: str
    target_width: int
    target_epochs: int
    dapter_epochs: int
    sweep_lambdas: str
    sweep_epochs: int
    sweep_max_train: int
    tune_finetune_epochs: int
    tune_max_rounds: int
    tune_val_images: int
    recon_epochs: int  # the attack suite's symmetric generator
    recon_train_images: int  # the attack suite's reconstruction training pairs
    suite_unet_epochs: int  # the attack suite's U-Net
    defended_epochs: int  # the defended converters (DEFENDED_RECIPES)
    celeba_suite_labels: str  # the attack suite's labelling attackers on CelebA
    ssim_recon_epochs: int  # Fig. 9(b): the attack on every converter of the sweep
    ssim_recon_train_images: int
    pretrain_epochs: int
    finetune_epochs: int
    cifar2_target_epochs: int
    cifar2_dapter_epochs: int
    face_size: int  # CelebA and LFW image side
    celeba_target_epochs: int
    celeba_dapter_epochs: int
    celeba_attack_labels: str
    table4_labels: tuple[str, ...]  # Table 4's other targets, besides the gender (Male) target
    lfw_target_epochs: int
    lfw_dapter_epochs: int
    lfw_pretrain_epochs: int
    lfw_finetune_epochs: int
    bench_image_size: int
    bench_runs: int
    train_step_steps: int
    face_datasets: bool  # whether CelebA and LFW steps are in the plan


SCALES = {
    "smoke": Scale(
        name="smoke",
        description="minutes on 2 CPU cores, the embedded CIFAR-10 sample only: checks an install and the "
        "plan's wiring, not the paper's numbers",
        cifar_source=EMBEDDED,
        max_train=256,
        max_test=128,
        target_model="lenet",
        target_width=0,
        target_epochs=1,
        dapter_epochs=1,
        sweep_lambdas="0.9,1.0",
        sweep_epochs=1,
        sweep_max_train=128,
        tune_finetune_epochs=1,
        tune_max_rounds=1,
        tune_val_images=64,
        recon_epochs=1,
        recon_train_images=128,
        suite_unet_epochs=1,
        defended_epochs=1,
        celeba_suite_labels="Smiling",
        ssim_recon_epochs=1,
        ssim_recon_train_images=128,
        pretrain_epochs=1,
        finetune_epochs=1,
        cifar2_target_epochs=1,
        cifar2_dapter_epochs=1,
        face_size=32,
        celeba_target_epochs=1,
        celeba_dapter_epochs=1,
        celeba_attack_labels="Smiling",
        table4_labels=("Eyeglasses",),
        lfw_target_epochs=1,
        lfw_dapter_epochs=1,
        lfw_pretrain_epochs=1,
        lfw_finetune_epochs=1,
        bench_image_size=64,
        bench_runs=2,
        train_step_steps=2,
        face_datasets=False,
    ),
    "cpu": Scale(
        name="cpu",
        description="under an hour on 2 CPU cores: every experiment on the real images of ../shared/data, "
        "with fewer images and epochs than the paper and 32x32 faces",
        cifar_source="npz",
        max_train=8000,
        max_test=2000,
        target_model="resnet18",
        target_width=16,
        target_epochs=8,
        dapter_epochs=4,
        sweep_lambdas="0,0.5,0.9,1.0",
        sweep_epochs=2,
        sweep_max_train=4000,
        tune_finetune_epochs=1,
        tune_max_rounds=2,
        tune_val_images=1000,
        recon_epochs=3,
        recon_train_images=4000,
        suite_unet_epochs=6,
        defended_epochs=6,
        celeba_suite_labels="Smiling",
        ssim_recon_epochs=3,
        ssim_recon_train_images=4000,
        pretrain_epochs=2,
        finetune_epochs=2,
        cifar2_target_epochs=6,
        cifar2_dapter_epochs=3,
        face_size=32,
        celeba_target_epochs=5,
        celeba_dapter_epochs=8,
        celeba_attack_labels="Wearing_Lipstick,Heavy_Makeup,Smiling",
        table4_labels=("Eyeglasses",),
        lfw_target_epochs=10,
        lfw_dapter_epochs=8,
        lfw_pretrain_epochs=10,
        lfw_finetune_epochs=4,
        bench_image_size=224,
        bench_runs=10,
        train_step_steps=20,
        face_datasets=True,
    ),
    "paper": Scale(
        name="paper",
        description="the settings of the committed results/ runs (WORKSPACE.md's commands): all training "
        "images, the full lambda grid of Fig. 8, the tuner, eight correlated attributes and four Table 4 "
        "targets; days on 2 CPU cores, hours on a GPU",
        cifar_source="npz",
        max_train=0,
        max_test=0,
        target_model="resnet18",
        target_width=32,
        target_epochs=15,
        dapter_epochs=5,
        sweep_lambdas="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95,0.97,0.99,1.0",
        sweep_epochs=3,
        sweep_max_train=8000,
        tune_finetune_epochs=2,
        tune_max_rounds=10,
        tune_val_images=2000,
        recon_epochs=10,
        recon_train_images=0,
        suite_unet_epochs=20,
        defended_epochs=20,
        celeba_suite_labels="Smiling,Young",
        ssim_recon_epochs=10,
        ssim_recon_train_images=0,
        pretrain_epochs=8,
        finetune_epochs=5,
        cifar2_target_epochs=12,
        cifar2_dapter_epochs=5,
        face_size=32,
        celeba_target_epochs=12,
        celeba_dapter_epochs=8,
        celeba_attack_labels="Wearing_Lipstick,Heavy_Makeup,No_Beard,Attractive,Young,Arched_Eyebrows,"
        "High_Cheekbones,Smiling",
        table4_labels=("Arched_Eyebrows", "Bangs", "Eyeglasses", "Wearing_Lipstick"),
        lfw_target_epochs=30,
        lfw_dapter_epochs=20,
        lfw_pretrain_epochs=30,
        lfw_finetune_epochs=10,
        bench_image_size=224,
        bench_runs=30,
        train_step_steps=30,
        face_datasets=True,
    ),
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


def available_datasets(data_dir: str) -> dict[str, str | None]:
    """Returns, for each dataset of ``DATASET_FILES``, None where it is present or why it is not."""
    missing = {}
    for name, files in DATASET_FILES.items():
        absent = [f for f in files if not os.path.exists(os.path.join(data_dir, f))]
        missing[name] = f"{os.path.join(data_dir, absent[0])} does not exist" if absent else None
    missing[EMBEDDED] = None
    return missing


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
    s = scale

    def w(name):  # Short: the plan reads better with it.
        return os.path.join(workdir, name)

    seed_flag = f"--seed={seed}"
    limits = [f"--max_test={s.max_test}"] if s.max_test else []
    if s.cifar_source == EMBEDDED:
        cifar = ["--source=embedded", *limits]
        cifar_data = (EMBEDDED,)
    else:
        cifar = [
            "--source=npz",
            f"--train_npz={os.path.join(data_dir, 'cifar10/train_20k.npz')}",
            f"--test_npz={os.path.join(data_dir, 'cifar10/test.npz')}",
            *limits,
        ]
        cifar_data = ("cifar10",)
    if s.max_train:
        cifar.append(f"--max_train={s.max_train}")
    width = [f"--width={s.target_width}"] if s.target_width else []

    def target(group):
        return w(f"{group}/target/target.keras")

    steps = []

    def add(name, module, args, what, datasets=cifar_data, after=(), seeded=True):
        args = tuple(args) + ((seed_flag,) if seeded else ())
        # Each step's --workdir or --output_dir is its own folder, named after it, unless shared (bandwidth/).
        own = [a.split("=", 1)[1] for a in args if a.startswith(("--workdir=", "--output_dir="))]
        output = own[0] if own and own[0] == w(name) else ""
        steps.append(Step(name, module, args, what, tuple(datasets), tuple(after), output))

    def add_target_and_converter(group, data, datasets, target_epochs, dapter_epochs, extra=()):
        add(
            f"{group}/target",
            "experiments.train_target",
            [
                *data,
                f"--model={s.target_model}",
                *width,
                f"--epochs={target_epochs}",
                *extra,
                f"--workdir={w(group + '/target')}",
            ],
            "§6 Table 2: the target (DLIS) model, trained on original images",
            datasets,
        )
        add(
            f"{group}/dapter",
            "experiments.train_dapter",
            [
                *data,
                f"--target={target(group)}",
                "--lambda_=0.9",
                f"--epochs={dapter_epochs}",
                *extra,
                f"--workdir={w(group + '/dapter')}",
            ],
            "§4, §7.1: the converter at lambda 0.9 (accuracy drop, entropy, bandwidth)",
            datasets,
            [f"{group}/target"],
        )

    # CIFAR-10: the target task of §7.1 and the reconstruction attack of §7.3.3.
    add_target_and_converter("cifar10", cifar, cifar_data, s.target_epochs, s.dapter_epochs)
    add(
        "cifar10/sweep",
        "experiments.lambda_sweep",
        [
            *cifar,
            f"--lambdas={s.sweep_lambdas}",
            f"--epochs={s.sweep_epochs}",
            f"--max_train={s.sweep_max_train}",
            f"--target={target('cifar10')}",
            f"--workdir={w('cifar10/sweep')}",
        ],
        "§7.1 Fig. 8: accuracy and entropy against lambda",
        after=["cifar10/target"],
    )
    add(
        "cifar10/tune",
        "experiments.tune_lambda",
        [
            *cifar,
            "--epochs=1",
            f"--finetune_epochs={s.tune_finetune_epochs}",
            f"--max_rounds={s.tune_max_rounds}",
            f"--val_images={s.tune_val_images}",
            f"--init_converter={w('cifar10/dapter')}",
            f"--target={target('cifar10')}",
            f"--workdir={w('cifar10/tune')}",
        ],
        "§7.1 tuning strategy: lambda in steps of 0.02 until both indices hold",
        after=["cifar10/dapter"],
    )
    ssim_recon = [f"--recon_epochs={s.ssim_recon_epochs}", f"--recon_train_images={s.ssim_recon_train_images}"]
    suite = [
        "--suite_reconstruction=symmetric,unet",
        f"--suite_symmetric_epochs={s.recon_epochs}",
        f"--suite_unet_epochs={s.suite_unet_epochs}",
        f"--suite_recon_train_images={s.recon_train_images}",
        f"--suite_pretrain_epochs={s.pretrain_epochs}",
        f"--suite_finetune_epochs={s.finetune_epochs}",
    ]

    def add_protection(group, data, datasets, extra_suite=(), after=()):
        """The attack suite on the paper's converter, and a converter of the defended recipe with its suite."""
        for converter, recipe in ((f"{group}/dapter", None), (f"{group}/defended", DEFENDED_RECIPES[group])):
            if recipe is not None:
                add(
                    converter,
                    "experiments.train_dapter",
                    [
                        *data,
                        f"--target={target(group)}",
                        *recipe,
                        f"--epochs={s.defended_epochs}",
                        f"--workdir={w(converter)}",
                    ],
                    "beyond the paper: the defended recipe (coarse output code and adversarial decoders)",
                    datasets,
                    [f"{group}/target"],
                )
            name = f"{group}/suite" if recipe is None else f"{group}/defended_suite"
            add(
                name,
                "experiments.attack_suite",
                [
                    *data,
                    *suite,
                    *extra_suite,
                    f"--target={target(group)}",
                    f"--converter={w(converter)}",
                    f"--workdir={w(name)}",
                ],
                "§5.3, §7.3.3 Fig. 13 and beyond: the attack suite (reconstruction and labelling attackers) on "
                + ("the paper's converter at lambda 0.9" if recipe is None else "the defended converter"),
                datasets,
                [converter, *after],
            )

    add_protection("cifar10", cifar, cifar_data)
    add(
        "cifar10/ssim_sweep",
        "experiments.reconstruction_sweep",
        [
            *cifar,
            *ssim_recon,
            f"--max_train={s.sweep_max_train}",
            f"--sweep_dir={w('cifar10/sweep')}",
            "--name=CIFAR-10",
            f"--workdir={w('cifar10/ssim_sweep')}",
        ],
        "§7.1 Fig. 9(b): reconstruction SSIM against lambda",
        after=["cifar10/sweep"],
    )
    add(
        "cifar10/gradcam",
        "experiments.gradcam",
        [
            *cifar,
            f"--targets=label={target('cifar10')}",
            f"--converters=label={w('cifar10/dapter')}",
            f"--workdir={w('cifar10/gradcam')}",
        ],
        "§7.2 Fig. 10: Grad-CAM attention of the target on original and converted images",
        after=["cifar10/dapter"],
    )
    add(
        "cifar10/bandwidth",
        "experiments.bandwidth",
        [*cifar, f"--converter={w('cifar10/dapter')}", "--name=CIFAR-10", "--sizes=0", f"--workdir={w('bandwidth')}"],
        "§7.4: PNG and JPEG bytes of converted against original images",
        after=["cifar10/dapter"],
    )
    add(
        "cifar10/export",
        "export.export_tflite",
        [
            *cifar,
            f"--workdir={w('cifar10/dapter')}",
            "--modes=float32,int8",
            "--calibration_steps=100",
            f"--output_dir={w('cifar10/export')}",
        ],
        "§3.2.2: the converter as .tflite files (float32, int8), each checked against Keras",
        after=["cifar10/dapter"],
    )
    add(
        "bench/export",
        "bench.bench_export",
        [
            f"--converter={w('cifar10/dapter')}",
            f"--image_size={s.bench_image_size}",
            "--small_size=0",
            "--layer_runs=0",
            f"--num_runs={s.bench_runs}",
            "--warmup_runs=2",
            f"--output_json={w('bench/export.json')}",
        ],
        "§7.4: host latency of the converter (Keras, float32 and int8 TFLite) at the phone's image size",
        (EMBEDDED,),
        ["cifar10/dapter"],
        seeded=False,  # bench_export times a fixed, embedded set of images
    )
    add(
        "bench/train_step",
        "bench.bench_train_step",
        [f"--steps={s.train_step_steps}", "--warmup_steps=2", f"--output_json={w('bench/train_step.json')}"],
        "training throughput: the custom loop against keras.Model.fit",
        (EMBEDDED,),
    )

    # Cifar2:10, the offline stand-in for Cifar20:100: the uncorrelated attack of §7.3.1 (Fig. 11).
    cifar2 = ["--dataset=cifar2_10", *cifar]
    add_target_and_converter("cifar2_10", cifar2, cifar_data, s.cifar2_target_epochs, s.cifar2_dapter_epochs)
    add(
        "cifar2_10/attack",
        "experiments.attack",
        [
            *cifar2,
            "--attacks=auto_recognition",
            f"--pretrained=label={target('cifar10')}",
            f"--finetune_epochs={s.finetune_epochs}",
            f"--target={target('cifar2_10')}",
            f"--converter={w('cifar2_10/dapter')}",
            f"--workdir={w('cifar2_10/attack')}",
        ],
        "§7.3.1 Fig. 11: auto-recognition of the 10 classes, uncorrelated with the vehicle/animal target",
        after=["cifar2_10/dapter", "cifar10/target"],
    )
    # The adversary's classifier of the 10 classes is the CIFAR-10 target, as in the attack above.
    add_protection(
        "cifar2_10", cifar2, cifar_data, [f"--suite_pretrained=label={target('cifar10')}"], ["cifar10/target"]
    )
    if not s.face_datasets:
        return steps

    # CelebA, gender target: correlated attributes (Fig. 12), its accuracy claim and Table 4.
    face = [f"--image_size={s.face_size}", *limits]

    def celeba_at(label):
        return [
            "--dataset=celeba",
            "--source=folder",
            f"--data_dir={os.path.join(data_dir, 'celeba')}",
            f"--target_label={label}",
            *face,
        ]

    celeba = celeba_at("Male")
    add_target_and_converter("celeba", celeba, ("celeba",), s.celeba_target_epochs, s.celeba_dapter_epochs)
    add(
        "celeba/attack",
        "experiments.attack",
        [
            *celeba,
            "--attacks=auto_recognition,visual_recognition",
            f"--attack_labels={s.celeba_attack_labels}",
            f"--visual_labels={s.celeba_attack_labels}",
            f"--pretrain_epochs={s.pretrain_epochs}",
            f"--finetune_epochs={s.finetune_epochs}",
            f"--target={target('celeba')}",
            f"--converter={w('celeba/dapter')}",
            f"--workdir={w('celeba/attack')}",
        ],
        "§7.3.1 Fig. 12, Eq. 5-6: correlated attributes; §5.2: the labelling kit for people",
        ("celeba",),
        ["celeba/dapter"],
    )
    # On aligned faces the mean image alone scores about 0.3: the bar is the mean image + 0.05.
    add_protection(
        "celeba",
        celeba,
        ("celeba",),
        [f"--suite_attack_labels={s.celeba_suite_labels}", "--max_ssim_over_mean_image=0.05"],
    )
    add(
        "celeba/bandwidth",
        "experiments.bandwidth",
        [*celeba, f"--converter={w('celeba/dapter')}", "--name=CelebA", "--sizes=0", f"--workdir={w('bandwidth')}"],
        "§7.4: bandwidth on faces",
        ("celeba",),
        ["celeba/dapter"],
    )
    table4 = {"Male": "celeba"}
    for label in s.table4_labels:
        group = f"celeba_{label}"
        add_target_and_converter(group, celeba_at(label), ("celeba",), s.celeba_target_epochs, s.celeba_dapter_epochs)
        table4[label] = group
    add(
        "celeba/table4",
        "experiments.gradcam",
        [
            "--dataset=celeba",
            "--source=folder",
            f"--data_dir={os.path.join(data_dir, 'celeba')}",
            *face,
            "--targets=" + ",".join(f"{label}={target(group)}" for label, group in table4.items()),
            "--converters=" + ",".join(f"{label}={w(group + '/dapter')}" for label, group in table4.items()),
            f"--workdir={w('celeba/table4')}",
        ],
        "§7.2 Table 4: each target's accuracy and importance under every converter",
        ("celeba",),
        [f"{group}/dapter" for group in table4.values()],
    )

    # LFW, gender target: identity as the uncorrelated attack task (Fig. 11).
    lfw = ["--dataset=lfw", "--source=folder", f"--data_dir={os.path.join(data_dir, 'lfw/gray250_min20')}", *face]
    add_target_and_converter("lfw", lfw, ("lfw",), s.lfw_target_epochs, s.lfw_dapter_epochs, ["--batch_size=64"])
    add(
        "lfw/attack",
        "experiments.attack",
        [
            *lfw,
            "--attacks=auto_recognition",
            f"--pretrain_epochs={s.lfw_pretrain_epochs}",
            f"--finetune_epochs={s.lfw_finetune_epochs}",
            "--attack_batch_size=64",
            f"--target={target('lfw')}",
            f"--converter={w('lfw/dapter')}",
            f"--workdir={w('lfw/attack')}",
        ],
        "§7.3.1 Fig. 11: auto-recognition of identity, uncorrelated with the gender target",
        ("lfw",),
        ["lfw/dapter"],
    )
    add(
        "lfw/bandwidth",
        "experiments.bandwidth",
        [*lfw, f"--converter={w('lfw/dapter')}", "--name=LFW", "--sizes=0", f"--workdir={w('bandwidth')}"],
        "§7.4: bandwidth on grey faces",
        ("lfw",),
        ["lfw/dapter"],
    )
    return steps


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


def _marker(workdir: str, name: str) -> str:
    return os.path.join(workdir, STEPS_DIR, name.replace("/", "__") + ".json")


def _log_path(workdir: str, name: str) -> str:
    return os.path.join(workdir, LOGS_DIR, name.replace("/", "__") + ".log")


def read_marker(workdir: str, name: str) -> dict | None:
    """Returns a finished step's record (command, seconds, finished), or None if it has not finished."""
    try:
        with open(_marker(workdir, name)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _write_json(path: str, obj) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    # Atomic: a kill between the two lines leaves no half-written marker.
    os.replace(tmp, path)


def _log_event(workdir: str, **event) -> None:
    event["time"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    event["unix"] = time.time()
    with open(os.path.join(workdir, EVENTS_FILE), "a") as f:
        f.write(json.dumps(event, sort_keys=True) + "\n")


def read_events(workdir: str) -> list[dict]:
    """Every start, done, failed and skipped event of every run in ``workdir``, oldest first."""
    try:
        with open(os.path.join(workdir, EVENTS_FILE)) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def _check_same_run(workdir: str, old: dict, new: dict, advice: str) -> None:
    for key in ("scale", "data_dir", "seed"):
        if old.get(key) != new[key]:
            raise DapterError(f"{workdir} holds a run with {key}={old.get(key)!r}, not {new[key]!r}; {advice}")


def check_plan_matches(workdir: str, plan_record: dict) -> None:
    """Writes ``workdir/plan.json`` on first use; afterwards requires the same scale, data and seed.

    Adds ``commits`` to ``plan_record``: every commit that ran in this workdir, oldest first.

    Raises:
        DapterError: ``workdir`` holds a run with another scale, data folder or seed: resuming it would
            mix two experiments in one report.
    """
    path = os.path.join(workdir, PLAN_FILE)
    commits = []
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        _check_same_run(workdir, old, plan_record, "use another --workdir or the same flags to resume it")
        commits = old.get("commits", [])
    # A run resumed with other code says so: the report lists every commit that ran a step.
    if plan_record.get("commit") and plan_record["commit"] not in commits:
        commits = commits + [plan_record["commit"]]
    plan_record["commits"] = commits
    _write_json(path, plan_record)


def read_plan_record(workdir: str, plan_record: dict) -> dict:
    """The record of the run in ``workdir`` (``plan.json``), checked against ``plan_record``; adds ``report_commit``.

    Raises:
        DapterError: ``workdir`` holds no run, or one with another scale, data folder or seed.
    """
    path = os.path.join(workdir, PLAN_FILE)
    if not os.path.exists(path):
        raise DapterError(
            f"{workdir} holds no dapter-reproduce run ({PLAN_FILE} is missing): run it without --report_only"
        )
    with open(path) as f:
        old = json.load(f)
    _check_same_run(workdir, old, plan_record, "pass the run's own flags")
    return {**old, "report_commit": plan_record.get("commit")}


def read_status(plan: list[Step], workdir: str) -> dict[str, dict]:
    """Each step's status as ``run_plan`` would start from: "done" where its marker holds its command."""
    status = {}
    for step in plan:
        marker = read_marker(workdir, step.name)
        if marker is not None and marker["command"] == step.as_dict()["command"]:
            status[step.name] = {"status": "done", "seconds": marker["seconds"]}
        else:
            status[step.name] = {"status": "not run", "reason": "not finished in this workdir"}
    return status


def _die_with_parent() -> None:
    """Runs in the child before exec: Linux kills it when reproduce.py dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # Not Linux: SIGINT and SIGTERM are still forwarded by run_plan.


def _run_child(command: list[str], log_path: str, cwd: str) -> int:
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "a") as log:
        log.write(f"\n$ {shlex.join(command)}\n")
        log.flush()
        child = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env, preexec_fn=_die_with_parent
        )
        try:
            return child.wait()
        except BaseException:
            # Ctrl-C or SIGTERM: stop the child too, so that no orphan keeps writing into the workdir.
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
            raise


def _last_error_line(log_path: str) -> str:
    with open(log_path, errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["(no output)"])[-1][:300]


def run_plan(plan: list[Step], workdir: str, data_dir: str, cwd: str, log=print) -> dict[str, dict]:
    """Runs every step not yet marked finished, in order, and returns each step's status.

    A step whose dataset is absent, or that needs a step that failed or was skipped, is skipped with
    the reason; a failing step is recorded with its log's last error line and the plan goes on with
    the steps that do not need it.

    Args:
        plan: From ``build_plan`` (or ``select_steps``).
        workdir: The run's folder: ``steps/`` markers, ``logs/``, ``events.jsonl`` and each step's output.
        data_dir: The data folder, to check which datasets exist.
        cwd: The folder the binaries run in (the repository root: ``bench/`` is not installed).
        log: Where progress lines go.

    Returns:
        ``{step name: {"status": "done" | "ran" | "failed" | "skipped", "seconds": ..., "reason": ...}}``;
        "done" means finished by an earlier run.
    """
    os.makedirs(workdir, exist_ok=True)
    missing = available_datasets(data_dir)
    status = {}
    for i, step in enumerate(plan, 1):
        prefix = f"[{i}/{len(plan)}] {step.name}"
        marker = read_marker(workdir, step.name)
        if marker is not None and marker["command"] != step.as_dict()["command"]:
            # The plan changed (another dapter-tf version): the old output does not answer this step.
            log(f"{prefix}: finished earlier with another command; running it again")
            marker = None
        if marker is not None:
            remade = _remade_since(workdir, step, marker.get("finished_unix", 0.0))
            if remade:
                # Its inputs changed after it finished: its output is stale, and the binaries would resume
                # from it rather than redo it, so it moves aside (kept, not deleted) and the step runs anew.
                log(f"{prefix}: {', '.join(remade)} ran again after it finished; running it again")
                _move_aside(workdir, step)
                marker = None
        if marker is not None:
            status[step.name] = {"status": "done", "seconds": marker["seconds"]}
            log(f"{prefix}: finished earlier ({marker['seconds']:.0f} s), not run again")
            continue
        if marker is None and step.output and os.path.exists(step.output):
            # A step interrupted earlier resumes from its partial output, unless an input was remade since.
            remade = _remade_since(workdir, step, _last_start(workdir, step.name))
            if remade:
                log(f"{prefix}: {', '.join(remade)} ran again since it was interrupted; starting it afresh")
                _move_aside(workdir, step)
        reason = next((f"no {d} data: {missing[d]}" for d in step.datasets if missing.get(d)), None)
        if reason is None:
            blocked = [a for a in step.after if status.get(a, {}).get("status") not in ("done", "ran")]
            if blocked:
                reason = f"needs {', '.join(blocked)}, which did not finish"
        if reason:
            status[step.name] = {"status": "skipped", "reason": reason}
            _log_event(workdir, event="skipped", step=step.name, reason=reason)
            log(f"{prefix}: skipped: {reason}")
            continue
        log_path = _log_path(workdir, step.name)
        log(f"{prefix}: {step.what} (log: {log_path})")
        _log_event(workdir, event="start", step=step.name)
        start = time.time()
        rc = _run_child(step.command(), log_path, cwd)
        seconds = time.time() - start
        if rc != 0:
            reason = f"exit {rc}: {_last_error_line(log_path)}"
            status[step.name] = {"status": "failed", "seconds": seconds, "reason": reason}
            _log_event(workdir, event="failed", step=step.name, seconds=seconds, reason=reason)
            log(f"{prefix}: FAILED after {seconds:.0f} s ({reason})")
            continue
        _write_json(
            _marker(workdir, step.name),
            {
                **step.as_dict(),
                "seconds": seconds,
                "finished": datetime.datetime.now().isoformat(timespec="seconds"),
                "finished_unix": time.time(),
            },
        )
        _log_event(workdir, event="done", step=step.name, seconds=seconds)
        status[step.name] = {"status": "ran", "seconds": seconds}
        log(f"{prefix}: finished in {seconds:.0f} s")
    return status


def _remade_since(workdir: str, step: Step, since: float) -> list[str]:
    """The steps ``step`` reads from that finished after ``since`` (a Unix time; 0 for markers without one)."""
    return [a for a in step.after if (read_marker(workdir, a) or {}).get("finished_unix", 0.0) > since]


def _last_start(workdir: str, name: str) -> float:
    starts = [e.get("unix", 0.0) for e in read_events(workdir) if e["event"] == "start" and e["step"] == name]
    return starts[-1] if starts else 0.0


def _move_aside(workdir: str, step: Step) -> None:
    if os.path.exists(_marker(workdir, step.name)):
        os.remove(_marker(workdir, step.name))
    if step.output and os.path.exists(step.output):
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        target = os.path.join(workdir, SUPERSEDED_DIR, f"{step.name.replace('/', '__')}-{stamp}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(step.output, target)


def git_commit(repo_dir: str) -> str:
    """The repository's commit, with ``+local changes`` when the working tree differs; 'unknown' outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_dir, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" +local changes" if dirty else "")
