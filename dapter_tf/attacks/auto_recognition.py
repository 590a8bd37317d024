"""The auto-recognition attack (§5.1, §7.3.1): a classifier fine-tuned to label converted images.

The adversary holds the public converter, a classifier of the attack label trained on normal
images, and a set of his own images labelled with the attack label. He converts his images and
fine-tunes the classifier on them (cross-entropy plus L2, transfer learning), then labels the
converted images users send. A second attacker (``attackers=("scratch",)``) trains the same
architecture from random weights on the converted images alone: transfer learning from photos can
hurt on images that no longer look like photos. Every training is a ``train.train_target`` run
with the attack label as its target, so it checkpoints, resumes and logs to TensorBoard like any
target.
"""

import dataclasses
import os

import numpy as np

from dapter_tf import evaluate, metrics, models, train
from dapter_tf.attacks.data_structures import AttackInputData, AutoRecognitionSpec
from dapter_tf.data import ImageSet
from dapter_tf.errors import DapterError
from dapter_tf.records import runs
from dapter_tf.records.attacks import AutoRecognitionResult


def correlation_bounds(target_labels: np.ndarray, attack_labels: np.ndarray) -> dict:
    """How much an attacker learns of the attack label from the target label alone (Eq. 5).

    Args:
        target_labels: N target labels (binary for ``p_co`` and ``acc_ideal`` to mean Eq. 5).
        attack_labels: N attack labels (likewise).

    Returns:
        ``p_co`` (P(target label == attack label)), ``acc_ideal`` (|P_co - 0.5| + 0.5) and
        ``acc_best_given_target``: the accuracy of answering, for each target class, the attack
        class most frequent within it, the best any function of the target label can do.
    """
    target_labels, attack_labels = np.asarray(target_labels), np.asarray(attack_labels)
    p_co = float(np.mean(target_labels == attack_labels))
    best = sum(np.bincount(attack_labels[target_labels == a]).max(initial=0) for a in np.unique(target_labels)) / len(
        target_labels
    )
    return {"p_co": p_co, "acc_ideal": abs(p_co - 0.5) + 0.5, "acc_best_given_target": float(best)}


def _attacker_config(input_data: AttackInputData, spec: AutoRecognitionSpec, **fields) -> train.TargetConfig:
    return train.TargetConfig(
        data=input_data.data,
        model=spec.model,
        width=spec.width,
        batch_size=spec.batch_size,
        seed=spec.seed,
        augment=spec.augment,
        **fields,
    )


def run_auto_recognition(input_data: AttackInputData, spec: AutoRecognitionSpec, workdir: str, converter, target):
    """Runs the auto-recognition attack for every attack label of ``spec``.

    Args:
        input_data: The task, the adversary's images (train) and the held-out images (test).
        spec: The attack's settings.
        workdir: Holds ``<label>/pretrain/`` and ``<label>/finetune/`` (resumable training runs).
        converter: The public converter (a Keras model).
        target: The frozen target (a Keras model).

    Returns:
        One ``AutoRecognitionResult`` per attack label.
    """
    task = input_data.task
    own = input_data.train if not spec.attack_images else input_data.train.take(spec.attack_images)
    test = input_data.test
    print(f"Converting {len(own)} adversary images and {len(test)} held-out images ...", flush=True)
    own_converted = dataclasses.replace(own, images=evaluate.convert_images(converter, own.images))
    test_converted = dataclasses.replace(test, images=evaluate.convert_images(converter, test.images))
    target_labels = test.labels[task.target_label]
    target_original = evaluate.target_accuracy(target, test.images, target_labels)
    target_converted = evaluate.target_accuracy(target, test_converted.images, target_labels)
    target_loss = metrics.accuracy_drop_points(target_original, target_converted)

    results = []
    for label in spec.attack_labels or task.attack_labels:
        attack_task = task.with_target(label)
        label_dir = os.path.join(workdir, label)
        print(f"== auto-recognition of {label!r} -> {label_dir}", flush=True)
        pretrained = spec.pretrained.get(label) or _pretrain(input_data, spec, attack_task, own, label_dir)
        vanilla = models.load_model_file(pretrained, "pretrained attack classifier")
        attack_labels = test.labels[label]
        attack_original = evaluate.target_accuracy(vanilla, test.images, attack_labels)
        attack_no_finetune = evaluate.target_accuracy(vanilla, test_converted.images, attack_labels)
        bounds = correlation_bounds(target_labels, attack_labels)
        extra = {"acc_best_given_target": bounds["acc_best_given_target"]}
        if task.num_classes == 2 and task.label_classes[label] == 2:
            # Eq. 5-6 are defined for two binary labels.
            extra.update(p_co=bounds["p_co"], acc_ideal=bounds["acc_ideal"])
            extra["acc_ideal_hat"] = bounds["acc_ideal"] * attack_original
        for attacker in spec.attackers:
            if attacker == "finetuned":
                # §5.1: transfer learning from the classifier of original images.
                config = _attacker_config(
                    input_data,
                    spec,
                    epochs=spec.finetune_epochs,
                    learning_rate=spec.finetune_learning_rate,
                    init_model=pretrained,
                    l2=spec.l2,
                )
                run_dir = os.path.join(label_dir, "finetune")
            else:
                # From random weights, on converted images alone, with the pre-training's recipe.
                config = _attacker_config(
                    input_data, spec, epochs=spec.pretrain_epochs, learning_rate=spec.pretrain_learning_rate
                )
                run_dir = os.path.join(label_dir, "scratch")
                print(f"   training a {spec.model} from scratch on converted images -> {run_dir}", flush=True)
            trained = train.train_target(config, attack_task, own_converted, test_converted, run_dir)
            attack_converted = trained["test_accuracy"]
            attack_loss = metrics.accuracy_drop_points(attack_original, attack_converted)
            result = AutoRecognitionResult(
                attack_label=label,
                target_accuracy_original=target_original,
                target_accuracy_converted=target_converted,
                target_loss_points=target_loss,
                attack_accuracy_original=attack_original,
                attack_accuracy_converted_no_finetune=attack_no_finetune,
                attack_accuracy_converted=attack_converted,
                attack_loss_points=attack_loss,
                loss_ratio=attack_loss / target_loss if target_loss > 0 else None,
                majority_accuracy=float(np.bincount(attack_labels).max() / len(attack_labels)),
                images_train=len(own),
                images_test=len(test),
                attacker=attacker,
                **extra,
            )
            print(f"   {result.summary()}", flush=True)
            results.append(result)
    return results


def _pretrain(
    input_data: AttackInputData, spec: AutoRecognitionSpec, attack_task, own: ImageSet, label_dir: str
) -> str:
    """Trains the adversary's classifier of the attack label on his original images; returns its file."""
    config = _attacker_config(input_data, spec, epochs=spec.pretrain_epochs, learning_rate=spec.pretrain_learning_rate)
    workdir = os.path.join(label_dir, "pretrain")
    print(f"   pre-training a {spec.model} on original images -> {workdir}", flush=True)
    train.train_target(config, attack_task, own, input_data.test, workdir)
    path = os.path.join(workdir, runs.TARGET_FILE)
    if not os.path.isfile(path):
        raise DapterError(f"pre-training wrote no classifier to {path}")
    return path
