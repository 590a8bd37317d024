"""The reproduction pipeline: the plan of every paper experiment, its runner, and the report of its claims.

``plan`` (the steps as data: ``scales``, ``datasets``, ``cifar_steps``, ``face_steps``), ``runner``
(runs them resumably, one process each),
``reproduction_report`` (each claim of the paper beside what was measured).
"""

from dapter_tf.pipeline.datasets import DATASET_FILES, EMBEDDED, NOT_AVAILABLE, available_datasets
from dapter_tf.pipeline.plan import DEFENDED_RECIPES, Step, build_plan, defined_flags, select_steps, undefined_flags
from dapter_tf.pipeline.runner import (
    EVENTS_FILE,
    LOGS_DIR,
    PLAN_FILE,
    STEPS_DIR,
    SUPERSEDED_DIR,
    check_plan_matches,
    git_commit,
    read_events,
    read_marker,
    read_plan_record,
    read_status,
    run_plan,
)
from dapter_tf.pipeline.scales import SCALES, Scale

__all__ = [
    "DATASET_FILES",
    "DEFENDED_RECIPES",
    "EMBEDDED",
    "EVENTS_FILE",
    "LOGS_DIR",
    "NOT_AVAILABLE",
    "PLAN_FILE",
    "SCALES",
    "STEPS_DIR",
    "SUPERSEDED_DIR",
    "Scale",
    "Step",
    "available_datasets",
    "build_plan",
    "defined_flags",
    "check_plan_matches",
    "git_commit",
    "read_events",
    "read_marker",
    "read_plan_record",
    "read_status",
    "run_plan",
    "select_steps",
    "undefined_flags",
]
