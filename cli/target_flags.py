"""The target's input contract flags (``models.served.TargetContract``), shared by every binary that takes a target.

The contract is stated once: by these flags or by the JSON beside the model
(``<target>.contract.json``); a binary that reads a workdir takes the one its ``config.json`` records.
"""

from absl import flags


def define_target_contract_flags():
    """Defines ``--target_preprocessing``, ``--target_output``, ``--target_signature`` and ``--target_output_key``.

    Returns:
        A function of no arguments giving the ``TargetContract`` the flags state, or None when none
        of them was given (the contract then comes from the JSON beside the model, or is our zoo's:
        ``served.resolve_contract``).
    """
    # Strings, not enums: TensorFlow is imported only once the flags are parsed (cli.runner), and the
    # contract checks its own values (``TargetContract`` names the flag in its one error line).
    holders = [
        flags.DEFINE_string(
            "target_preprocessing",
            "zero_one",
            "How the provider's server turns uint8 RGB pixels p into the target's input, applied between the "
            "converter and the target everywhere (training, evaluation, attacks, export gates, verify): zero_one "
            "p/255 (our zoo's targets); minus_one_one p/127.5-1 (MobileNet, keras.applications 'tf' mode); "
            "raw_0_255 p (EfficientNet, MobileNetV3 with their own preprocessing); caffe BGR p minus the ImageNet "
            "means (ResNet50, VGG); torch (p/255 - ImageNet mean) / std. Give it here or in <target>.contract.json, "
            "not both differently.",
        ),
        flags.DEFINE_string(
            "target_output",
            "logits",
            "What the target returns: logits, or probabilities (a softmax already applied; their log is used as "
            "logits).",
        ),
        flags.DEFINE_string(
            "target_signature",
            "serving_default",
            "For a SavedModel target: the signature to call, as TF Serving would (it must take one float image "
            "batch). Unused for a .keras target.",
        ),
        flags.DEFINE_string(
            "target_output_key",
            "",
            "For a SavedModel target whose signature returns several outputs: the one holding the class scores. "
            "Empty: the signature's only output.",
        ),
    ]

    def build():
        from dapter_tf.models.served import TargetContract

        if not any(flags.FLAGS[holder.name].present for holder in holders):
            return None
        preprocessing, output, signature, output_key = (holder.value for holder in holders)
        return TargetContract(
            preprocessing=preprocessing, output=output, signature=signature, output_key=output_key
        )

    return build
