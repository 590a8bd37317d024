"""The attacks of §5 on converted images: auto-recognition, visual recognition, reconstruction.

Shaped like tensorflow/privacy's membership-inference module: ``AttackType`` names the attacks,
``AttackInputData`` and one spec per attack say what to run (each with ``validate()``),
``run_attacks`` runs them, and ``AttackResults`` (a record, ``dapter_tf.records.attacks``)
summarises, saves and loads what they found.

* ``auto_recognition``: §5.1, a classifier fine-tuned on converted images (Fig. 11, Fig. 12).
* ``reconstruction``: §5.3, a generator trained to restore the originals (Fig. 9(b), Fig. 13).
* ``labelling``: §5.2, a labelling-study page for people, and the scorer of their answers.
* ``models``: the reconstruction attackers (the paper's symmetric generator, a stronger U-Net).
* ``suite``: the attack suite, the security index of a converter: every attacker, the baselines
  and the verdicts, from one call (``run_attack_suite``).
* ``plotting``: the figures.
"""

from dapter_tf.attacks.attacks import RESULTS_FILE, run_attacks
from dapter_tf.attacks.data_structures import (
    PAPER_VISUAL_ATTRIBUTES,
    AttackInputData,
    AutoRecognitionSpec,
    ReconstructionSpec,
    VisualSpec,
)
from dapter_tf.attacks.suite import SuiteSpec, run_attack_suite
from dapter_tf.records.attacks import (
    AttackResults,
    AttackType,
    AutoRecognitionResult,
    ReconstructionResult,
    VisualResult,
)
from dapter_tf.records.suite import SecurityCriteria, SuiteResults

__all__ = [
    "AttackInputData",
    "AttackResults",
    "AttackType",
    "AutoRecognitionResult",
    "AutoRecognitionSpec",
    "PAPER_VISUAL_ATTRIBUTES",
    "RESULTS_FILE",
    "ReconstructionResult",
    "ReconstructionSpec",
    "SecurityCriteria",
    "SuiteResults",
    "SuiteSpec",
    "VisualResult",
    "VisualSpec",
    "run_attack_suite",
    "run_attacks",
]
