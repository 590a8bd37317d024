"""The plan's face steps (``plan.build_plan``): CelebA (with Table 4) and LFW, read from the shared folders."""

import os


def celeba_at(plan, label: str) -> list[str]:
    """The flags that read the shared CelebA folder with ``label`` as the target label."""
    return [
        "--dataset=celeba",
        "--source=folder",
        f"--data_dir={os.path.join(plan.data_dir, 'celeba')}",
        f"--target_label={label}",
        *plan.face,
    ]


def add_celeba(plan) -> None:
    """CelebA, gender target: correlated attributes (Fig. 12) and its accuracy claim."""
    celeba = celeba_at(plan, "Male")
    plan.add_target_and_converter(
        "celeba", celeba, ("celeba",), plan.scale.celeba_target_epochs, plan.scale.celeba_dapter_epochs
    )
    plan.add(
        "celeba/attack",
        "experiments.attack",
        [
            *celeba,
            "--attacks=auto_recognition,visual_recognition",
            f"--attack_labels={plan.scale.celeba_attack_labels}",
            f"--visual_labels={plan.scale.celeba_attack_labels}",
            f"--pretrain_epochs={plan.scale.pretrain_epochs}",
            f"--finetune_epochs={plan.scale.finetune_epochs}",
            f"--target={plan.target('celeba')}",
            f"--converter={plan.w('celeba/dapter')}",
            f"--workdir={plan.w('celeba/attack')}",
        ],
        "§7.3.1 Fig. 12, Eq. 5-6: correlated attributes; §5.2: the labelling kit for people",
        ("celeba",),
        ["celeba/dapter"],
    )
    # On aligned faces the mean image alone scores about 0.3: the bar is the mean image + 0.05.
    plan.add_protection(
        "celeba",
        celeba,
        ("celeba",),
        [f"--suite_attack_labels={plan.scale.celeba_suite_labels}", "--max_ssim_over_mean_image=0.05"],
    )
    plan.add(
        "celeba/bandwidth",
        "experiments.bandwidth",
        [
            *celeba,
            f"--converter={plan.w('celeba/dapter')}",
            "--name=CelebA",
            "--sizes=0",
            f"--workdir={plan.w('bandwidth')}",
        ],
        "§7.4: bandwidth on faces",
        ("celeba",),
        ["celeba/dapter"],
    )


def add_celeba_table4(plan) -> None:
    """CelebA's Table 4: a target and converter per attribute, each target under every converter."""
    table4 = {"Male": "celeba"}
    for label in plan.scale.table4_labels:
        group = f"celeba_{label}"
        plan.add_target_and_converter(
            group,
            celeba_at(plan, label),
            ("celeba",),
            plan.scale.celeba_target_epochs,
            plan.scale.celeba_dapter_epochs,
        )
        table4[label] = group
    plan.add(
        "celeba/table4",
        "experiments.gradcam",
        [
            "--dataset=celeba",
            "--source=folder",
            f"--data_dir={os.path.join(plan.data_dir, 'celeba')}",
            *plan.face,
            "--targets=" + ",".join(f"{label}={plan.target(group)}" for label, group in table4.items()),
            "--converters=" + ",".join(f"{label}={plan.w(group + '/dapter')}" for label, group in table4.items()),
            f"--workdir={plan.w('celeba/table4')}",
        ],
        "§7.2 Table 4: each target's accuracy and importance under every converter",
        ("celeba",),
        [f"{group}/dapter" for group in table4.values()],
    )


def add_lfw(plan) -> None:
    """LFW, gender target: identity as the uncorrelated attack task (Fig. 11)."""
    lfw = [
        "--dataset=lfw",
        "--source=folder",
        f"--data_dir={os.path.join(plan.data_dir, 'lfw/gray250_min20')}",
        *plan.face,
    ]
    plan.add_target_and_converter(
        "lfw", lfw, ("lfw",), plan.scale.lfw_target_epochs, plan.scale.lfw_dapter_epochs, ["--batch_size=64"]
    )
    plan.add(
        "lfw/attack",
        "experiments.attack",
        [
            *lfw,
            "--attacks=auto_recognition",
            f"--pretrain_epochs={plan.scale.lfw_pretrain_epochs}",
            f"--finetune_epochs={plan.scale.lfw_finetune_epochs}",
            "--attack_batch_size=64",
            f"--target={plan.target('lfw')}",
            f"--converter={plan.w('lfw/dapter')}",
            f"--workdir={plan.w('lfw/attack')}",
        ],
        "§7.3.1 Fig. 11: auto-recognition of identity, uncorrelated with the gender target",
        ("lfw",),
        ["lfw/dapter"],
    )
    plan.add(
        "lfw/bandwidth",
        "experiments.bandwidth",
        [
            *lfw,
            f"--converter={plan.w('lfw/dapter')}",
            "--name=LFW",
            "--sizes=0",
            f"--workdir={plan.w('bandwidth')}",
        ],
        "§7.4: bandwidth on grey faces",
        ("lfw",),
        ["lfw/dapter"],
    )
