"""The attacks of §5 on converted images: auto-recognition, visual recognition, reconstruction.

Shaped like tensorflow/privacy's membership-inference module: ``AttackType`` names the attacks,
``AttackInputData`` and one spec per attack say what to run (each with ``validate()``),
``run_attacks`` runs them, and ``AttackResults`` summarises, saves and loads what they found.

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
    AttackResults,
    AttackType,
    AutoRecognitionResult,
    AutoRecognitionSpec,
    ReconstructionResult,
    ReconstructionSpec,
    VisualResult,
    VisualSpec,
)
from dapter_tf.attacks.suite import SecurityCriteria, SuiteResults, SuiteSpec, run_attack_suite

__all__ = [
    "PAPER_VISUAL_ATTRIBUTES",
    "RESULTS_FILE",
    "AttackInputData",
    "AttackResults",
    "AttackType",
    "AutoRecognitionResult",
    "AutoRecognitionSpec",
    "ReconstructionResult",
    "ReconstructionSpec",
    "VisualResult",
    "VisualSpec",
    "SecurityCriteria",
    "SuiteResults",
    "SuiteSpec",
    "run_attack_suite",
    "run_attacks",
]
