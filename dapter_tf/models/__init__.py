"""Models: the converter of Fig. 3 with its output grid, the target zoo, and their model files.

``converter`` (the U-Net, the block encoder and their output layers), ``saving`` (atomic saving, safe loading of a
target or converter), ``targets`` (target builders by name). ``targets`` is imported on its own
(``from dapter_tf.models import targets``), so that what builds a release never loads the zoo.
"""

from dapter_tf.models.converter import (
    DEFAULT_FILTERS,
    DEFAULT_OUTPUT_STEP,
    MAX_OUTPUT_BLOCK,
    PASS_GAIN,
    PATCH_FILTERS,
    SPLIT_FULL_FILTERS,
    ClassCode,
    FromPatches,
    OutputBlocks,
    OutputLevels,
    RepeatBlocks,
    ToPatches,
    build_block_converter,
    build_class_code_converter,
    build_converter,
    build_patch_converter,
    build_split_converter,
    check_output_block,
    check_output_step,
    output_block_of,
    output_step_of,
    snap_to_levels,
    strip_output_levels,
)
from dapter_tf.models.saving import freeze, load_converter, load_model_file, load_target, save_model
from dapter_tf.pixels import SIDE_MULTIPLE, check_image_size

__all__ = [
    "ClassCode",
    "DEFAULT_FILTERS",
    "FromPatches",
    "DEFAULT_OUTPUT_STEP",
    "MAX_OUTPUT_BLOCK",
    "OutputBlocks",
    "OutputLevels",
    "PASS_GAIN",
    "PATCH_FILTERS",
    "RepeatBlocks",
    "SIDE_MULTIPLE",
    "SPLIT_FULL_FILTERS",
    "ToPatches",
    "build_block_converter",
    "build_class_code_converter",
    "build_converter",
    "build_patch_converter",
    "build_split_converter",
    "check_image_size",
    "check_output_block",
    "check_output_step",
    "freeze",
    "load_converter",
    "load_model_file",
    "load_target",
    "output_block_of",
    "output_step_of",
    "save_model",
    "snap_to_levels",
    "strip_output_levels",
]
