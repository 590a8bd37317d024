"""Data: the tasks of the paper, where their images come from, and the pipeline that feeds training.

``tasks`` (the tasks and their labels), ``images`` (the image set type and its checks),
``sources`` (embedded sample, ``.npz``, tfds), ``folders`` (official dataset folders),
``photos`` (a provider's own labelled photos: a folder per class or a CSV), ``tfrecords``
(sharded TFRecord files, written once and streamed), ``loading`` (a run's ``DataConfig`` and its
checked load), ``pipeline`` (tf.data).
"""

from dapter_tf.data.images import ImageSet, to_float, validate_images, validate_labels
from dapter_tf.data.loading import DataConfig, config_task, load_data, load_test_data, load_training_data
from dapter_tf.data.pipeline import build_dataset, build_training_dataset
from dapter_tf.data.sources import (
    EMBEDDED_SAMPLE,
    SOURCES,
    TFDS_HOSTS,
    check_reachable,
    check_source,
    derive_labels,
    embedded_sample_path,
    load_embedded,
    load_npz,
    load_split,
    load_tfds,
)
from dapter_tf.data.tfrecords import RecordSet

__all__ = [
    "DataConfig",
    "EMBEDDED_SAMPLE",
    "ImageSet",
    "SOURCES",
    "TFDS_HOSTS",
    "RecordSet",
    "build_dataset",
    "build_training_dataset",
    "check_reachable",
    "check_source",
    "config_task",
    "derive_labels",
    "embedded_sample_path",
    "load_data",
    "load_embedded",
    "load_npz",
    "load_split",
    "load_test_data",
    "load_training_data",
    "load_tfds",
    "to_float",
    "validate_images",
    "validate_labels",
]
