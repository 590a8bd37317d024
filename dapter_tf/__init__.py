"""DAPter: a user-side converter that prevents data abuse in deep learning inference services.

The library is flat, one job per module, named after the paper's concepts:

* ``data``: real images and labels (embedded sample, ``.npz`` files, tfds) and tf.data pipelines.
* ``tasks``: which dataset and which label a target model serves (and which labels an attacker wants).
* ``model``: the converter of Fig. 3.
* ``classifier``: the target (DLIS) models and how to load them frozen.
* ``losses``: L_eta (Eq. 2-3), L_acc (Eq. 4) and L_dap (Eq. 1).
* ``metrics``: image entropy (§4.1), accuracy drop, PNG and JPEG sizes of images.
* ``train``: the custom training loops under a ``tf.distribute`` strategy.
* ``evaluate`` and ``report``: measuring a converter and writing what was measured.
* ``lambda_study``: the lambda sweep of Fig. 8 and the tuning strategy of §7.1.
* ``attacks``: the attacks of §5 (auto-recognition, visual recognition, reconstruction).
* ``saliency``: Grad-CAM, the importance V and V_D, attention consistency and Table 4 (§7.2).
* ``bandwidth``: bytes of converted images against the originals (§7.4).
* ``plots``: what every plot shares.
"""

import os

# Keras 3 picks its backend at import time; this project is TensorFlow only.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's C++ start-up chatter drowns the one-line errors our binaries print.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dapter_tf.errors import DapterError  # noqa: E402

__all__ = ["DapterError"]
__version__ = "0.1.0"
