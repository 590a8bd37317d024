"""DAPter: a user-side converter that prevents data abuse in deep learning inference services.

One package per part of the data flow (WORKSPACE.md gives each module's job; tests/test_import_rules.py
keeps what may import what, and that no two parts import each other):

* ``data``: tasks and their real images (embedded sample, ``.npz``, folders, CSVs, TFRecords, tfds).
* ``models``: the converter of Fig. 3 (and its efficient and block forms), the targets, saving.
* ``losses`` and ``metrics``: L_eta, L_acc, L_dap (Eq. 1-4); entropy (§4.1), accuracy drop, sizes.
* ``train``: the target and the converter on L_dap, in one resumable loop under ``tf.distribute``.
* ``records``: what each stage leaves for the next (configs, results, suites), one reader per file.
* ``attacks`` and ``defences``: the attacks of §5 and the attack suite; the adversarial defence.
* ``analysis``: the λ study (§7.1), Grad-CAM (§7.2), bandwidth (§7.4), the protection frontier and
  ``dapter-protect``'s recipe search, and the reports.
* ``pipeline``: every experiment as one resumable plan.
* ``evaluate`` (measuring a converter), ``figures`` (what every figure shares), ``pixels``,
  ``errors`` and ``cluster`` (leaves every part may import).
"""

import os

# Keras 3 picks its backend at import time; this project is TensorFlow only.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's C++ start-up chatter drowns the one-line errors our binaries print.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dapter_tf.errors import DapterError  # noqa: E402

__all__ = ["DapterError"]
__version__ = "0.1.0"
