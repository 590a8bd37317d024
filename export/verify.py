r"""Verifies a released converter bundle: every file's SHA-256, and every claim of its model card re-measured.

Checks each file of --bundle against manifest.json (a changed, missing or extra file fails), then
re-measures every claim in model_card.md's "Claims" table on held-out images the verifier brings
(the data flags): the converter's entropy, bandwidth saving and output grid, and each .tflite file's
parity with the Keras converter, run by ai_edge_litert. With --target (a target of the same task,
e.g. the provider's own, or one trained with dapter-train-target) the accuracy claims are
re-measured too; without it they are reported as skipped. Prints one line per check and exits
non-zero, after naming each file or claim that does not hold, if any does not.

Example:
  dapter-verify --bundle=release/cifar10_resnet18 --source=npz \
      --train_npz=../shared/data/cifar10/train_20k.npz --test_npz=../shared/data/cifar10/test.npz --max_test=1000
"""

import sys

from absl import flags

from experiments import flags_lib

_build_data = flags_lib.define_data_flags()
_BUNDLE = flags.DEFINE_string("bundle", None, "The release bundle's folder (from dapter-release).", required=True)
_TARGET = flags.DEFINE_string(
    "target", "", "A target model (.keras) to re-measure the accuracy claims with; empty: those claims are skipped."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seeds which held-out images are measured (with --max_test).")

flags.adopt_module_key_flags(flags_lib)


def main():
    import os

    from dapter_tf import DapterError, classifier, data
    from export import release_lib

    if not os.path.isdir(_BUNDLE.value):
        raise DapterError(f"--bundle {_BUNDLE.value} is not a folder")
    data_config = _build_data()
    target = classifier.load_target(_TARGET.value) if _TARGET.value else None
    task, test_set = data.load_test_data(data_config, seed=_SEED.value)
    findings = release_lib.verify_bundle(_BUNDLE.value, test_set.images, test_set.labels[task.target_label], target)
    for finding in findings:
        print(f"{'ok  ' if finding.ok else 'FAIL'} {finding.subject}: {finding.detail}")
    failed = [f.subject for f in findings if not f.ok]
    if failed:
        sys.stderr.write(f"error: the bundle does not hold: {', '.join(failed)}\n")
        sys.exit(1)
    print(f"verified: {len(findings)} checks on {len(test_set)} held-out images")


def run():
    flags_lib.run(main)


if __name__ == "__main__":
    run()
