r"""Builds a verifiable release bundle of a trained converter: files, model card with claims, SHA-256 manifest.

Puts into --output_dir (a new folder): converter.keras, the .tflite files of --export_dir that
passed their parity gate, model_card.md and manifest.json. The card's figures and its "Claims"
table are measured here on the held-out images of the data flags (entropy, bandwidth, the output
grid, parity of every file, and with the target the accuracy lost); --attack_results adds the
summary of a dapter-attack run, and --suite_results the attack suite's figures (dapter-attack-suite),
which the card states as claims (attack_max_ssim, attack_label_gap_points.<label>). The target
named in the workdir's config.json measures accuracy and is never bundled; --publish_target copies
it beside the bundle, outside it, as OUTPUT_DIR.target.keras, so that anyone can re-measure the
accuracy claims. Anyone can check the bundle with dapter-verify.

Example:
  dapter-release --workdir=runs/cifar10_resnet18_dapter --source=npz \
      --train_npz=../shared/data/cifar10/train_20k.npz --test_npz=../shared/data/cifar10/test.npz \
      --max_test=2000 --output_dir=release/cifar10_resnet18
"""

import os

from absl import flags

from cli import flags_lib, runner

_build_data = flags_lib.define_data_flags()
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "A train_dapter workdir: converter.keras and config.json (λ, target).", required=True
)
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", None, "The dapter-export-tflite output to release (default: WORKDIR/export)."
)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "The bundle's folder; must be new or empty.", required=True)
_TARGET = flags.DEFINE_string(
    "target", "", "The target's .keras file, to measure accuracy (default: the one WORKDIR/config.json records)."
)
_NAME = flags.DEFINE_string("name", "", "The release's name on the card (default: the output folder's name).")
_ATTACK_RESULTS = flags.DEFINE_string(
    "attack_results", "", "A dapter-attack attacks.json whose summary the card reports (optional)."
)
_ENTROPY_TOLERANCE = flags.DEFINE_float(
    "entropy_tolerance", 0.25, "How far (bits) a verifier's mean entropy of converted images may fall from the card's."
)
_BANDWIDTH_TOLERANCE = flags.DEFINE_float(
    "bandwidth_tolerance", 10.0, "How far (percent) a verifier's PNG bandwidth saving may fall from the card's."
)
_ACCURACY_TOLERANCE = flags.DEFINE_float(
    "accuracy_tolerance", 2.0, "How many points a verifier's accuracy drop may exceed the card's."
)
_SUITE_RESULTS = flags.DEFINE_string(
    "suite_results", "", "A dapter-attack-suite suite.json whose figures the card states as claims (optional)."
)
_SSIM_TOLERANCE = flags.DEFINE_float(
    "ssim_tolerance", 0.05, "How far a verifier's reconstruction SSIM may exceed the card's attack_max_ssim."
)
_GAP_TOLERANCE = flags.DEFINE_float(
    "label_gap_tolerance", 3.0, "How many points a re-measured labelling gap may exceed the card's."
)
_PHONE_COST = flags.DEFINE_bool(
    "phone_cost",
    True,
    "State on the card the converter's GMAC at 224x224, its int8 latency as a ratio of MobileNetV2 1.0 int8 timed "
    "beside it on this host, and the latency that implies on phones whose MobileNetV2 figure is published "
    "(about a minute).",
)
_PUBLISH_TARGET = flags.DEFINE_bool(
    "publish_target",
    False,
    "Copy the target beside the bundle, outside it, as OUTPUT_DIR.target.keras (a SavedModel directory: as "
    "OUTPUT_DIR.target/), with its input contract as OUTPUT_DIR.target.contract.json where it is not our zoo's "
    "(the provider's side, published so that anyone can re-measure the accuracy claims).",
)
_SEED = flags.DEFINE_integer("seed", 0, "Seeds which held-out images are measured (with --max_test).")

flags.adopt_module_key_flags(flags_lib)


def main():
    from dapter_tf import DapterError, data, models
    from dapter_tf.models import served
    from dapter_tf.records import runs
    from dapter_tf.records.attacks import AttackResults
    from dapter_tf.records.files import sha256
    from dapter_tf.records.suite import SuiteResults
    from export.release import release_lib
    from export.release.card import ReleaseInfo
    from export.release.claims import ClaimTolerances

    tolerances = ClaimTolerances(
        entropy_bits=_ENTROPY_TOLERANCE.value,
        bandwidth_percent=_BANDWIDTH_TOLERANCE.value,
        accuracy_drop_points=_ACCURACY_TOLERANCE.value,
        ssim=_SSIM_TOLERANCE.value,
        label_gap_points=_GAP_TOLERANCE.value,
    )
    tolerances.validate()
    data_config = _build_data()
    config = runs.read_dapter_config(_WORKDIR.value)
    if os.path.isdir(_OUTPUT_DIR.value) and os.listdir(_OUTPUT_DIR.value):
        raise DapterError(f"--output_dir {_OUTPUT_DIR.value} is not empty: a bundle goes into a new folder")
    attacks = ""
    if _ATTACK_RESULTS.value:
        # The results' own lines; their head names the paths of the attacker's machine, not the bundle's.
        attack_results = AttackResults.load(_ATTACK_RESULTS.value)
        attacks = "\n".join(f"{result.summary()}" for result in attack_results.results)
    suite = SuiteResults.load(_SUITE_RESULTS.value) if _SUITE_RESULTS.value else None
    target_path = runs.recorded_target_path(_WORKDIR.value, _TARGET.value)
    contract = served.resolve_contract(target_path, served.recorded_contract(_WORKDIR.value))
    is_saved_model = served.is_saved_model(target_path)
    published = ""
    if _PUBLISH_TARGET.value:
        published = f"{os.path.normpath(_OUTPUT_DIR.value)}.target{'' if is_saved_model else '.keras'}"
    published_contract = served.contract_file(published) if published else ""
    for path in (published, published_contract):
        if path and os.path.exists(path):
            raise DapterError(f"{path} exists: the published target goes beside a new bundle")
    target = models.load_target(target_path, contract)
    stated = contract != served.DEFAULT_CONTRACT or is_saved_model
    converter_path = os.path.join(_WORKDIR.value, runs.CONVERTER_FILE)
    task, test_set = data.load_test_data(data_config, seed=_SEED.value)
    info = ReleaseInfo(
        name=_NAME.value or os.path.basename(os.path.normpath(_OUTPUT_DIR.value)),
        task=task.name,
        target_label=task.target_label,
        # A SavedModel's weights are not Keras variables of the wrapper: its parameter count would read 0.
        target_name=(
            f"a SavedModel, {os.path.basename(os.path.normpath(target_path))}"
            if is_saved_model
            else f"{target.name} ({target.count_params():,} parameters)"
        ),
        lambda_=config.get("lambda_"),
        data=_describe_data(data_config),
        image_size=tuple(test_set.images.shape[1:3]),
        attacks=attacks,
        published_target=os.path.basename(published),
        class_code=_class_code_source(config.get("class_code", "")),
        target_contract=contract.describe() if stated else "",
        converter=_describe_converter(config),
        cost=_phone_cost(converter_path, test_set.images) if _PHONE_COST.value else None,
    )
    manifest = release_lib.build_bundle(
        converter_path,
        _EXPORT_DIR.value or os.path.join(_WORKDIR.value, "export"),
        _OUTPUT_DIR.value,
        info,
        test_set.images,
        test_set.labels[task.target_label],
        target,
        target_path,
        tolerances,
        suite,
        contract.to_dict() if stated else None,
    )
    for name, entry in manifest["files"].items():
        print(f"{entry['sha256']}  {entry['bytes']:>10,}  {name}")
    if published:
        release_lib.publish_target(target_path, published, contract.to_dict() if stated else None)
        print(f"{release_lib.target_sha256(published)}  {published} (beside the bundle)")
        if stated:
            print(f"{sha256(published_contract)}  {published_contract} (its input contract)")
    print(f"bundle: {_OUTPUT_DIR.value} (check it with dapter-verify --bundle={_OUTPUT_DIR.value} and the data flags)")


def _phone_cost(converter_path: str, images) -> dict:
    """The converter's cost at 224x224 beside the MobileNetV2 yardstick (``yardstick.measure_converter_cost``)."""
    from dapter_tf import models
    from export.benchmark import yardstick

    print("measuring the converter's cost at 224x224 beside MobileNetV2 1.0 int8 ...", flush=True)
    cost = yardstick.measure_converter_cost(models.load_converter(converter_path), images)
    print(f"   {cost['gmac']:.3f} GMAC, {cost['ratio']:.2f}x MobileNetV2 1.0 int8 on {cost['cpu']}", flush=True)
    return cost


def _describe_converter(config: dict) -> str:
    """The converter's architecture and training, from its workdir's config.json, in one line ("" if unrecorded)."""
    if "epochs" not in config or "filters" not in config:
        return ""
    architecture = config.get("architecture", "fig3")
    filters = "/".join(str(f) for f in config.get("filters", ()))
    block = int(config.get("output_block", 1))
    patch = int(config.get("patch", 4))
    text = {
        "block_encoder": "the block encoder",
        "fig3_patches": f"the Fig. 3 converter on {patch}x{patch} pixel patches",
        "fig3_split": f"the Fig. 3 converter split between full resolution and {patch}x{patch} pixel patches",
    }.get(architecture, "the Fig. 3 converter")
    text += f" ({filters} channels)" if filters else ""
    if block > 1:
        text += f", one colour per {block}x{block} block"
    epochs = int(config.get("epochs", 0))
    text += f"; {epochs} epoch{'' if epochs == 1 else 's'}"
    if config.get("task_head"):
        text += f" with L_head at weight {config['task_head']:g} (a linear head on its mean features, dropped after training)"
    if config.get("code_margin"):
        text += (
            f" of fine-tuning on L_dap + {config['code_margin']:g} L_margin from an earlier training, so that its "
            "int8 file rounds each colour as the Keras converter does"
        )
    if config.get("validation_images"):
        text += f"; the best epoch kept, on {config['validation_images']:,} training photos held out of its training"
    return text


def _class_code_source(class_code: str) -> str:
    """The card's name for a recorded ``class_code``: "target", a classifier's file name, or ""."""
    return class_code if class_code in ("", "target") else os.path.basename(class_code)


def _describe_data(config) -> str:
    where = {"npz": config.test_npz, "folder": config.data_dir, "tfds": config.tfds_data_dir}.get(config.source)
    return f"{config.dataset} ({config.source}{': ' + os.path.basename(os.path.normpath(where)) if where else ''})"


def run():
    runner.run(main)


if __name__ == "__main__":
    run()
