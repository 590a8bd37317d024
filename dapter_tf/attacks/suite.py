"""The attack suite: the security index of a converter, measured by attackers trained after it froze.

One call, ``run_attack_suite``, trains every attacker of a ``SuiteSpec`` against one frozen
converter and returns one ``SuiteResults``: each attacker's figures beside its baseline, and the
verdicts of ``SecurityCriteria``. In the paper's strongest setting, every attacker trains on
converted images of the converter's *own* training split and is measured on held-out images.

* Reconstruction: the paper's symmetric generator and a much stronger U-Net, trained longer
  (``attacks.reconstructors``), and the lookup of the mean original of each converted training image
  (``attacks.lookup``: for a converter that sends few distinct images, no decoder does better). The
  suite's figure is their maximum SSIM, beside the SSIM of the training images' mean image (what an
  attacker who learnt nothing of the image scores).
* Labelling: the fine-tuned attacker of §5.1 and one trained from scratch on converted images.
  The suite's figure, per attack label, is their best accuracy, beside the bound of an attacker who
  knows only the target label (its majority attack class within each target class): the gap
  between the two is what the converted images give away beyond the service's own answer.
* Usability: the target's accuracy on original and converted held-out images, with the standard
  error of the paired difference on that many images.

The decoders of the adversarial defence (``defences.adversarial``) are never among these attackers.
"""

import dataclasses
import os
import time

import numpy as np

from dapter_tf import evaluate, metrics, models
from dapter_tf.attacks import auto_recognition, reconstruction
from dapter_tf.attacks.data_structures import (
    AttackInputData,
    AutoRecognitionSpec,
    ReconstructionSpec,
)
from dapter_tf.errors import DapterError
from dapter_tf.records.suite import SecurityCriteria, SuiteResults

SUITE_FILE = "suite.json"
SUMMARY_FILE = "summary.txt"

# The suite's attackers at full strength. The U-Net has about 16 times the paper generator's
# parameters and trains twice as long.
DEFAULT_RECONSTRUCTION = (
    ReconstructionSpec(architecture="symmetric", epochs=10),
    ReconstructionSpec(architecture="unet", epochs=20),
    ReconstructionSpec(architecture="lookup"),
)
DEFAULT_LABELLING = AutoRecognitionSpec(attackers=("finetuned", "scratch"))


@dataclasses.dataclass(frozen=True)
class SuiteSpec:
    """Which attackers the suite trains, and the criteria it judges them by.

    Attributes:
        reconstruction: One ``ReconstructionSpec`` per reconstruction attacker (distinct
            architectures).
        labelling: The labelling attackers (``AutoRecognitionSpec.attackers``), or ``None``; they
            run only where the task has attack labels.
        criteria: The verdicts' thresholds.
    """

    reconstruction: tuple = DEFAULT_RECONSTRUCTION
    labelling: AutoRecognitionSpec | None = DEFAULT_LABELLING
    criteria: SecurityCriteria = SecurityCriteria()

    def validate(self, task) -> None:
        """Raises DapterError on an empty suite, a repeated attacker, or a spec the task cannot run."""
        self.criteria.validate()
        architectures = [spec.architecture for spec in self.reconstruction]
        if len(set(architectures)) != len(architectures):
            raise DapterError(f"each reconstruction attacker may appear once, got {', '.join(architectures)}")
        for spec in self.reconstruction:
            spec.validate(task)
        if self.runs_labelling(task):
            self.labelling.validate(task)
        if not self.reconstruction and not self.runs_labelling(task):
            raise DapterError("the attack suite has no attacker to run on this task")

    def runs_labelling(self, task) -> bool:
        """Whether the labelling attackers run: they need attack labels (CIFAR-10 has none)."""
        return self.labelling is not None and bool(self.labelling.attack_labels or task.attack_labels)


def run_attack_suite(input_data: AttackInputData, spec: SuiteSpec, workdir: str) -> SuiteResults:
    """Trains every attacker of ``spec`` against the frozen converter and judges the converter.

    Each attacker works in its own folder of ``workdir`` (``reconstruction_<architecture>/``,
    ``labelling/``), whose training runs resume when the same call is repeated after a crash.

    Args:
        input_data: The task, the converter's own training images (the attackers train on them,
            converted), the held-out images, the converter and the target (optional: without it
            usability is not measured).
        spec: The attackers and criteria.
        workdir: Where the attackers work, and where ``suite.json`` (``SuiteResults.save``) and
            ``summary.txt`` go.

    Returns:
        The results, with their verdicts.

    Raises:
        DapterError: on bad input data or specs, before anything is trained.
    """
    input_data.validate()
    spec.validate(input_data.task)
    start = time.time()
    converter = models.load_converter(input_data.converter_path)
    target = models.load_target(input_data.target_path, input_data.target_contract) if input_data.target_path else None
    task = input_data.task
    input_data.check_target(target)
    if spec.runs_labelling(task) and target is None:
        raise DapterError("the labelling attackers need the target model (target_path)")
    os.makedirs(workdir, exist_ok=True)
    test = input_data.test
    converted = evaluate.convert_images(converter, test.images)
    usability = dict(
        target_accuracy_original=None,
        target_accuracy_converted=None,
        accuracy_drop_points=None,
        accuracy_drop_error_points=None,
    )
    if target is not None:
        labels = test.labels[task.target_label]
        right_original = evaluate.target_correct(target, test.images, labels)
        right_converted = evaluate.target_correct(target, converted, labels)
        drop, error = metrics.paired_drop(right_original, right_converted)
        usability = dict(
            target_accuracy_original=float(right_original.mean()),
            target_accuracy_converted=float(right_converted.mean()),
            accuracy_drop_points=drop,
            accuracy_drop_error_points=error,
        )
    found_reconstruction = []
    for recon_spec in spec.reconstruction:
        folder = os.path.join(workdir, f"reconstruction_{recon_spec.architecture}")
        print(f"== reconstruction attacker {recon_spec.architecture} -> {folder}", flush=True)
        found_reconstruction.append(reconstruction.run_reconstruction(input_data, recon_spec, folder, converter))
    found_labelling = []
    if spec.runs_labelling(task):
        folder = os.path.join(workdir, "labelling")
        found_labelling = auto_recognition.run_auto_recognition(input_data, spec.labelling, folder, converter, target)
    results = SuiteResults(
        task=task.name,
        converter_path=input_data.converter_path,
        target_path=input_data.target_path,
        images_train=len(input_data.train),
        images_test=len(test),
        entropy_original=float(np.mean(metrics.image_entropy(test.images))),
        entropy_converted=float(np.mean(metrics.image_entropy(converted))),
        reconstruction=tuple(found_reconstruction),
        labelling=tuple(found_labelling),
        criteria=spec.criteria,
        seconds=time.time() - start,
        **usability,
    )
    results.save(os.path.join(workdir, SUITE_FILE))
    with open(os.path.join(workdir, SUMMARY_FILE), "w") as f:
        f.write(results.summary() + "\n")
    print(results.summary(), flush=True)
    return results
