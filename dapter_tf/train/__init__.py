"""Training: the target (DLIS) model, and the converter on L_dap against the frozen target.

``config`` (the run configs), ``strategy`` (``tf.distribute``), ``loop`` (the shared resumable
loop), ``target`` and ``converter`` (the two trainings). The λ sweep and tuner, which also attack,
are ``analysis.lambda_study``.
A run's files are read and written by ``dapter_tf.records.runs``.
"""

from dapter_tf.train.config import ACC_LABELS, STRATEGIES, DapterConfig, TargetConfig
from dapter_tf.train.converter import BestEpoch, build_dapter_step, build_task_head, split_validation, train_dapter
from dapter_tf.train.loop import DivergedError, Trainable, run_training_loop
from dapter_tf.train.strategy import build_strategy, check_batches, distribute_step
from dapter_tf.train.target import train_target

__all__ = [
    "ACC_LABELS",
    "BestEpoch",
    "DapterConfig",
    "DivergedError",
    "STRATEGIES",
    "TargetConfig",
    "Trainable",
    "build_dapter_step",
    "build_task_head",
    "build_strategy",
    "check_batches",
    "distribute_step",
    "run_training_loop",
    "split_validation",
    "train_dapter",
    "train_target",
]
