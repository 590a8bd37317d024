r"""Verifies a released converter bundle: every file's SHA-256, and every claim of its model card re-measured.

Checks each file of --bundle against manifest.json (a changed, missing or extra file fails), then
re-measures every claim in model_card.md's "Claims" table on held-out images the verifier brings
(the data flags, which must be of the card's task, target label and image size, or verify refuses
in one line): the converter's entropy, bandwidth saving and output grid, and each .tflite file's
parity with the Keras converter, run by ai_edge_litert. With --target (a target of the same task,
e.g. the provider's own, or one trained with dapter-train-target) the accuracy claims are
re-measured too; without it they are reported as skipped.

With --attacks the security claim of the attack suite (attack_max_ssim) is re-measured too: a
reconstruction attacker of the verifier's own (--attack_architecture) trains for at most
--attack_seconds on the data flags' training images, converted by the bundle's converter, and its
SSIM on the held-out images must not exceed the card's claim by more than its tolerance. A
time-bounded attacker is weaker than the release's, so a pass says the claim is not grossly false
(a converter close to the identity fails at once); only dapter-attack-suite re-measures it in full.

Prints one line per check (ok, FAIL, or skip for a claim it could not re-measure) and exits
non-zero, after naming each file or claim that does not hold, if any does not. Each accuracy claim's
line gives the drop with its paired standard error and 95 % interval, and says whether the claim's
limit is met at 95 % confidence, exceeded at 95 % confidence, or undecided (and about how many
images would decide it); the claim itself holds or fails by its point figure, as the card states it.

Too few held-out images verify nothing, and are refused in one line that gives the number needed.
The card's means (entropy, PNG bytes, pixel differences, SSIM) need at least 100 images. An accuracy
claim moves by 100 / n points per flipped prediction, whose paired standard error is also 100 / n
points; a claim that allows t points needs two such standard errors within t: n >= 200 / t. With
--target that is 100 images for the accuracy drop (2 points) and 400 for a float .tflite file's
drop against Keras (0.5 points): a card with a float32 file needs 400 held-out images.

Examples (the committed reference release; the second needs ../shared/data's CIFAR-10 npz files):
  dapter-verify --bundle=results/release/cifar2_10_reference --dataset=cifar2_10 --source=embedded
  dapter-verify --bundle=results/release/cifar2_10_reference --dataset=cifar2_10 --source=npz \
      --train_npz=../shared/data/cifar10/train_20k.npz --test_npz=../shared/data/cifar10/test.npz --max_test=1000 \
      --target=results/release/cifar2_10_reference.target.keras
"""

import sys

from absl import flags

from cli import flags_lib, runner

_build_data = flags_lib.define_data_flags()
_BUNDLE = flags.DEFINE_string("bundle", None, "The release bundle's folder (from dapter-release).", required=True)
_TARGET = flags.DEFINE_string(
    "target",
    "",
    "A target model (.keras file or SavedModel directory) to re-measure the accuracy claims with, through the "
    "input contract the bundle states (target_contract.json); empty: those claims are skipped.",
)
_SEED = flags.DEFINE_integer("seed", 0, "Seeds which held-out images are measured (with --max_test).")
_ATTACKS = flags.DEFINE_bool(
    "attacks",
    False,
    "Also re-measure the card's attack_max_ssim claim with a reconstruction attacker trained here on the "
    "data flags' training images (bounded by --attack_seconds).",
)
_ATTACK_SECONDS = flags.DEFINE_float(
    "attack_seconds", 300.0, "With --attacks: at most this many seconds of attacker training (> 0)."
)
_ATTACK_ARCHITECTURE = flags.DEFINE_enum(
    "attack_architecture",
    "unet",
    ["symmetric", "unet", "lookup"],
    "With --attacks: the reconstruction attacker (unet, the strongest decoder; symmetric, the paper's; or lookup, "
    "the mean original of each converted training image, the strongest where the converter sends few images).",
)
_ATTACK_EPOCHS = flags.DEFINE_integer(
    "attack_epochs", 20, "With --attacks: epochs the attacker's learning-rate schedule plans (time may stop it sooner)."
)

flags.adopt_module_key_flags(flags_lib)


def main():
    import os
    import tempfile

    from dapter_tf import DapterError, data, models
    from dapter_tf.models import served
    from export.release import release_lib
    from export.release.claims import TARGET_CONTRACT

    if not os.path.isdir(_BUNDLE.value):
        raise DapterError(f"--bundle {_BUNDLE.value} is not a folder")
    if not _ATTACK_SECONDS.value > 0:
        raise DapterError(f"--attack_seconds must be > 0, got {_ATTACK_SECONDS.value}")
    if _ATTACK_EPOCHS.value < 1:
        raise DapterError(f"--attack_epochs must be >= 1, got {_ATTACK_EPOCHS.value}")
    data_config = _build_data()
    # Before any image is loaded: the data must be of the bundle's task (the size is checked below).
    task = data.config_task(data_config)
    release_lib.check_verifier_data(_BUNDLE.value, task.name, task.target_label, task.image_size)
    target = None
    if _TARGET.value:
        # Measured through the contract the bundle states (its target_contract.json; none: our zoo's), or
        # the one the JSON beside the target states; both given, they must agree.
        stated = release_lib.read_target_contract(_BUNDLE.value)
        stated = served.TargetContract.from_dict(stated, TARGET_CONTRACT) if stated else None
        target = models.load_target(_TARGET.value, served.resolve_contract(_TARGET.value, stated))
    if target is not None and target.output_shape[-1] != task.num_classes:
        raise DapterError(
            f"--target {_TARGET.value} has {target.output_shape[-1]} outputs but task {task.name} has "
            f"{task.num_classes} classes"
        )
    if data_config.max_test:  # Refused before any image is loaded; all images (0) are counted once loaded.
        release_lib.check_verifier_images(_BUNDLE.value, data_config.max_test, target is not None)
    if _ATTACKS.value:
        task, train_set, test_set = data.load_data(data_config, seed=_SEED.value)
    else:
        task, test_set = data.load_test_data(data_config, seed=_SEED.value)
    release_lib.check_verifier_data(_BUNDLE.value, task.name, task.target_label, test_set.images.shape[1:3])
    release_lib.check_verifier_images(_BUNDLE.value, len(test_set), target is not None)
    elsewhere = {}
    if _ATTACKS.value:
        with tempfile.TemporaryDirectory(prefix="dapter-verify-attack-") as workdir:
            elsewhere = _attack(train_set.images, test_set.images, workdir)
    findings = release_lib.verify_bundle(
        _BUNDLE.value, test_set.images, test_set.labels[task.target_label], target, elsewhere
    )
    for finding in findings:
        state = "skip" if finding.skipped else "ok  " if finding.ok else "FAIL"
        print(f"{state} {finding.subject}: {finding.detail}")
    failed = [f.subject for f in findings if not f.ok]
    if failed:
        sys.stderr.write(f"error: the bundle does not hold: {', '.join(failed)}\n")
        sys.exit(1)
    skipped = sum(f.skipped for f in findings)
    print(f"verified: {len(findings) - skipped} checks ({skipped} skipped) on {len(test_set)} held-out images")


def _attack(train_images, test_images, workdir: str) -> dict:
    """Re-measures ``attack_max_ssim``: a time-bounded reconstruction attacker against the bundle's converter."""
    import os

    from dapter_tf import DapterError, models
    from dapter_tf.attacks import ReconstructionSpec, reconstruction
    from export.release.claims import ATTACK_SSIM_CLAIM, CONVERTER, MODEL_CARD, parse_claims

    with open(os.path.join(_BUNDLE.value, MODEL_CARD)) as f:
        names = {claim.name for claim in parse_claims(f.read())}
    if ATTACK_SSIM_CLAIM not in names:
        raise DapterError(f"--attacks: the card makes no {ATTACK_SSIM_CLAIM} claim to re-measure")
    converter_path = os.path.join(_BUNDLE.value, CONVERTER)
    converter = models.load_converter(converter_path)
    spec = ReconstructionSpec(architecture=_ATTACK_ARCHITECTURE.value, epochs=_ATTACK_EPOCHS.value, seed=_SEED.value)
    print(
        f"--attacks: training a {spec.architecture} reconstruction attacker for at most {_ATTACK_SECONDS.value:g} s "
        f"on {len(train_images)} converted training images ...",
        flush=True,
    )
    result = reconstruction.reconstruct_images(
        converter, converter_path, train_images, test_images, spec, workdir, _ATTACK_SECONDS.value
    )
    # As the suite does: the converted image as sent is an attacker too, one that trains nothing.
    return {ATTACK_SSIM_CLAIM: max(result.ssim, result.ssim_converted)}


def run():
    runner.run(main)


if __name__ == "__main__":
    run()
