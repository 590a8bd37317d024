r"""Attacks a trained converter (§5, §7.3): auto-recognition, reconstruction, and a visual labelling kit.

--attacks picks any of:
  auto_recognition    §5.1: for each attack label, a classifier trained on original images (or
                      given with --pretrained) is fine-tuned on the adversary's converted images;
                      reports target- and attack-task accuracy on original and converted held-out
                      images and the ratio of their losses (Fig. 11), and with binary labels P_co,
                      Acc_ideal and Acc_ideal x Acc_vanilla (Eq. 5-6, Fig. 12).
  reconstruction      §5.3: a generator mirroring the converter learns to restore the originals
                      from the converter's own training images; SSIM and PSNR on held-out images
                      and a Fig. 13-style grid.
  visual_recognition  §5.2: a self-contained HTML page of converted held-out images (--per_class
                      positives and negatives per attribute) for people to label, and its answer
                      key; score the exported answers with dapter-score-labelling.

Writes WORKDIR/attacks.json (loads back with dapter_tf.attacks.AttackResults.load),
WORKDIR/summary.txt, uncorrelated.png or correlated.png, and one folder per attack. A rerun with the
same flags resumes the attack's training runs.

Example (CelebA, gender target, eight attributes):
  dapter-attack --dataset=celeba --source=folder --data_dir=../shared/data/celeba --target_label=Male \
      --image_size=32 --target=runs/celeba_male_resnet18/target.keras \
      --converter=runs/tune_celeba_male_resnet18/round_01 \
      --attacks=auto_recognition,reconstruction,visual_recognition --pretrain_epochs=8 \
      --attack_labels=Wearing_Lipstick,Heavy_Makeup,No_Beard,Attractive,Young,Arched_Eyebrows,High_Cheekbones,Smiling \
      --workdir=runs/attack_celeba_male
"""

from absl import flags

from cli import attack_flags, flags_lib, runner, target_flags

ATTACKS = ("auto_recognition", "reconstruction", "visual_recognition")

_build_data = flags_lib.define_data_flags()
_build_reconstruction = attack_flags.define_reconstruction_flags()
_CONVERTER = flags.DEFINE_string(
    "converter", None, "The attacked converter's .keras file (or its dapter-train-dapter workdir).", required=True
)
_TARGET = flags.DEFINE_string(
    "target",
    "",
    "The target's .keras file or SavedModel directory; auto_recognition reports its accuracy on original and "
    "converted images. Its contract: the flags below, else the converter's workdir's, else <target>.contract.json.",
)
_build_contract = target_flags.define_target_contract_flags()
_ATTACKS = flags.DEFINE_list(
    "attacks",
    ["auto_recognition", "reconstruction"],
    f"Attacks to run, any of: {', '.join(ATTACKS)} (visual_recognition needs binary attack labels, as CelebA's).",
)
_ATTACK_LABELS = flags.DEFINE_list(
    "attack_labels", [], "auto_recognition: labels to attack (empty: all the task's attack labels)."
)
_ATTACK_MODEL = flags.DEFINE_string(
    "attack_model",
    "resnet18",
    "auto_recognition: architecture of the adversary's classifiers (as --model of "
    "dapter-train-target); §7.3.1 uses the target's, ResNet18.",
)
_ATTACK_WIDTH = flags.DEFINE_integer("attack_width", 16, "auto_recognition: width of the adversary's classifiers.")
_PRETRAINED = flags.DEFINE_list(
    "pretrained",
    [],
    "auto_recognition: label=path items: a classifier of that label the adversary already has, "
    "trained on original images (e.g. label=runs/cifar10_resnet18/target.keras); the others are trained here.",
)
_PRETRAIN_EPOCHS = flags.DEFINE_integer(
    "pretrain_epochs", 10, "auto_recognition: epochs of training on original images, for labels without --pretrained."
)
_FINETUNE_EPOCHS = flags.DEFINE_integer(
    "finetune_epochs", 5, "auto_recognition: epochs of fine-tuning on the adversary's converted images."
)
_PRETRAIN_LR = flags.DEFINE_float(
    "pretrain_learning_rate", 1e-3, "auto_recognition: Adam's initial rate on original images (cosine decay)."
)
_FINETUNE_LR = flags.DEFINE_float(
    "finetune_learning_rate", 3e-4, "auto_recognition: Adam's initial rate when fine-tuning (cosine decay)."
)
_L2 = flags.DEFINE_float(
    "l2", 5e-4, "auto_recognition: weight of the L2 regulariser added to the cross-entropy when fine-tuning."
)
_ATTACK_IMAGES = flags.DEFINE_integer(
    "attack_images",
    0,
    "auto_recognition: the adversary's labelled images, from the training split (0: all, the strongest adversary).",
)
_ATTACK_BATCH = flags.DEFINE_integer("attack_batch_size", 128, "auto_recognition: batch size.")
_VISUAL_LABELS = flags.DEFINE_list(
    "visual_labels",
    [],
    "visual_recognition: binary attributes to ask about (empty: the paper's Arched_Eyebrows, "
    "Bangs, Chubby and Eyeglasses where the task has them).",
)
_PER_CLASS = flags.DEFINE_integer(
    "per_class", 20, "visual_recognition: positive and negative images per attribute (the paper: 20 and 20)."
)
_PAGE_TITLE = flags.DEFINE_string("page_title", "Labelling study", "visual_recognition: the page's heading.")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds data order, weights and the images picked for the labelling page.")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Folder for attacks.json, summary.txt, the plots and one folder per attack.", required=True
)

for module in (flags_lib, attack_flags, target_flags):
    flags.adopt_module_key_flags(module)


def build_specs():
    """The attack specs the flags ask for."""
    from dapter_tf import DapterError, attacks

    unknown = [a for a in _ATTACKS.value if a not in ATTACKS]
    if unknown or not _ATTACKS.value:
        raise DapterError(f"--attacks takes some of {', '.join(ATTACKS)}; got {','.join(_ATTACKS.value) or 'none'}")
    specs = []
    if "auto_recognition" in _ATTACKS.value:
        specs.append(
            attacks.AutoRecognitionSpec(
                attack_labels=tuple(_ATTACK_LABELS.value),
                model=_ATTACK_MODEL.value,
                width=_ATTACK_WIDTH.value,
                pretrained=flags_lib.parse_pairs(_PRETRAINED.value, "--pretrained"),
                pretrain_epochs=_PRETRAIN_EPOCHS.value,
                finetune_epochs=_FINETUNE_EPOCHS.value,
                pretrain_learning_rate=_PRETRAIN_LR.value,
                finetune_learning_rate=_FINETUNE_LR.value,
                l2=_L2.value,
                batch_size=_ATTACK_BATCH.value,
                attack_images=_ATTACK_IMAGES.value,
                seed=_SEED.value,
            )
        )
    if "reconstruction" in _ATTACKS.value:
        specs.append(_build_reconstruction(_SEED.value))
    if "visual_recognition" in _ATTACKS.value:
        specs.append(
            attacks.VisualSpec(
                attack_labels=tuple(_VISUAL_LABELS.value),
                per_class=_PER_CLASS.value,
                seed=_SEED.value,
                title=_PAGE_TITLE.value,
            )
        )
    return specs


def main():
    import os

    from dapter_tf import attacks

    specs = build_specs()
    input_data = attack_flags.load_attack_input(
        _build_data(), _CONVERTER.value, _TARGET.value, _SEED.value, _build_contract()
    )
    results = attacks.run_attacks(input_data, specs, _WORKDIR.value)
    print(results.summary())
    print(f"wrote {os.path.join(_WORKDIR.value, attacks.RESULTS_FILE)} and summary.txt")


def run():
    runner.run(main)


if __name__ == "__main__":
    run()
