"""The release bundle of a converter (§2, §3.2.2): files, SHA-256 manifest, model card, and its verification.

DAPter's promise to users rests on the converter being public: anyone can check that the app runs
the converter that was released and that it does what its card says. A bundle is a folder with

  converter.keras            the Keras converter (never the target: it stays with the provider)
  converter_<mode>.tflite    the exported files that passed their parity gate (export_tflite_lib)
  model_card.md              task, target name, lambda, data, and the measured figures; its
                             "Claims" table is machine-checkable
  manifest.json              SHA-256 and size of every other file

``verify_bundle`` checks every hash and re-measures every claim on images the verifier supplies
(with a target of its own, the accuracy claim too), and names each file or claim that does not hold.
Claims are measured by one function, ``measure_claims``, at release and at verification alike.
"""

import dataclasses
import hashlib
import json
import os
import shutil

import keras
import numpy as np

from dapter_tf import DapterError, evaluate
from dapter_tf.models import load_converter
from dapter_tf.models.saving import check_finite
from dapter_tf.records.files import (
    atomic_file,
    clear_leftovers,
    copy_file,
    path_sha256,
    sha256,
    staged_folder,
    write_bytes,
    write_json,
)
from export.release.card import ReleaseInfo, parse_card_task, render_card
from export.release.claims import (
    ATTACK_SSIM_CLAIM,
    CONVERTER,
    LABEL_GAP_CLAIM,
    MANIFEST,
    MODEL_CARD,
    TARGET_CONTRACT,
    ClaimTolerances,
    accuracy_confidence,
    check_images,
    format_value,
    is_accuracy_claim,
    make_claims,
    measure_claims,
    parse_claims,
    suite_claims,
)
from export.tflite.modes import file_name


def write_manifest(bundle_dir: str) -> dict:
    """Writes ``manifest.json``: SHA-256 and bytes of every file in the bundle but itself."""
    files = {}
    for name in sorted(os.listdir(bundle_dir)):
        path = os.path.join(bundle_dir, name)
        if name != MANIFEST and os.path.isfile(path):
            files[name] = {"sha256": sha256(path), "bytes": os.path.getsize(path)}
    manifest = {"format": "dapter-tf release bundle 1", "files": files}
    write_json(os.path.join(bundle_dir, MANIFEST), manifest)
    return manifest


def build_bundle(
    converter_path: str,
    export_dir: str,
    output_dir: str,
    info: ReleaseInfo,
    images: np.ndarray,
    labels: np.ndarray,
    target: keras.Model,
    target_path: str,
    tolerances: ClaimTolerances = ClaimTolerances(),
    suite=None,
    target_contract: dict | None = None,
) -> dict:
    """Writes a release bundle to ``output_dir`` and returns its manifest.

    Args:
        converter_path: The converter's ``.keras`` file.
        export_dir: A ``dapter-export-tflite`` output folder (``export.json`` and the files).
        output_dir: The bundle's folder; must not exist or be empty.
        info: Task, target name, lambda, data (the card's description).
        images: uint8 held-out images the claims are measured on.
        labels: Their target labels.
        target: The target, to measure the accuracy claims (it is not bundled).
        target_path: Its file, to make sure no copy of it lands in the bundle.
        tolerances: The slack each claim allows a verifier.
        suite: The converter's attack suite results (``dapter_tf.attacks.SuiteResults``), whose
            figures the card states as claims; ``None``: no security claims beyond entropy.
        target_contract: The target's input contract (``TargetContract.to_dict``), written as
            ``target_contract.json`` so that a verifier measures through it; None: our zoo's.

    Raises:
        DapterError: on a missing export, a file that broke its parity gate or is not the file
            it passed (SHA-256 against export.json), a non-empty
            ``output_dir``, or a bundle that would hold the target.
    """
    export_json = os.path.join(export_dir, "export.json")
    if not os.path.isfile(export_json):
        raise DapterError(f"{export_dir} has no export.json: run dapter-export-tflite first")
    with open(export_json) as f:
        export = json.load(f)
    broken = [mode for mode, e in export["files"].items() if e.get("failures")]
    if broken:
        raise DapterError(f"refusing to release files that broke their parity gate: {', '.join(broken)}")
    clear_leftovers(output_dir)
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise DapterError(f"{output_dir} is not empty: a bundle goes into a new folder")
    if sha256(converter_path) == _target_file_hash(target_path):
        raise DapterError("the bundle would hold the target model; nothing was released")
    converter = load_converter(converter_path)  # Refuses non-finite weights (a diverged run).
    if tuple(converter.output_shape[1:]) != tuple(converter.input_shape[1:]):
        raise DapterError(
            f"{converter_path} is not a converter: it maps {converter.input_shape[1:]} to {converter.output_shape[1:]}"
        )
    tflite_files = {}
    for mode in export["files"]:
        name = file_name(mode)
        path = os.path.join(export_dir, name)
        if not os.path.isfile(path):
            raise DapterError(f"{path} is listed in export.json but missing")
        with open(path, "rb") as f:
            tflite_files[name] = f.read()
        recorded = export["files"][mode].get("sha256")
        if recorded is None:
            raise DapterError(f"{export_json} records no SHA-256 for {name}: re-run dapter-export-tflite")
        if hashlib.sha256(tflite_files[name]).hexdigest() != recorded:
            raise DapterError(
                f"{path} is not the file its parity gate passed (its SHA-256 differs from export.json's): "
                "re-run dapter-export-tflite"
            )
    converted = evaluate.convert_images(converter, images)
    measured = measure_claims(converter, tflite_files, images, labels, target, converted)
    check_serves_task(converted, measured)
    claims = make_claims(measured, export, tolerances)
    if suite is not None:
        claims += suite_claims(suite, tolerances)
    # The bundle is written into a staging folder that becomes output_dir only once every file and
    # the manifest are written: a kill or a full disk leaves no half bundle to block the rerun.
    with staged_folder(output_dir) as staging:
        copy_file(converter_path, os.path.join(staging, CONVERTER))
        for name, model_bytes in tflite_files.items():
            write_bytes(os.path.join(staging, name), model_bytes)
        with atomic_file(os.path.join(staging, MODEL_CARD), "w") as f:
            f.write(render_card(info, measured, claims, export, len(images), suite))
        if target_contract is not None:
            write_json(os.path.join(staging, TARGET_CONTRACT), target_contract)
        manifest = write_manifest(staging)
        target_hash = _target_file_hash(target_path)
        if any(entry["sha256"] == target_hash for entry in manifest["files"].values()):
            raise DapterError("the bundle would hold the target model; nothing was released")
    return manifest


def _target_file_hash(target_path: str) -> str:
    """The SHA-256 of the target's file: a ``.keras`` file, or a SavedModel's graph and weights' ``saved_model.pb``."""
    if os.path.isdir(target_path):
        return sha256(os.path.join(target_path, "saved_model.pb"))
    return sha256(target_path)


def target_sha256(path: str) -> str:
    """The SHA-256 of a target: a ``.keras`` file's, or a SavedModel directory's over every file (``tree_sha256``)."""
    return path_sha256(path)


def publish_target(target_path: str, published: str, contract: dict | None) -> None:
    """Copies the target to ``published``, beside a bundle, and its contract to ``<published>.contract.json``.

    A SavedModel directory is copied whole into a hidden folder renamed into place at the end, as
    a ``.keras`` file is copied atomically: a kill leaves no half target to be taken for the whole.
    """
    if contract is not None:
        stem = published[: -len(".keras")] if published.endswith(".keras") else published
        write_json(f"{stem}.contract.json", contract)
    if not os.path.isdir(target_path):
        copy_file(target_path, published)
        return
    with staged_folder(published) as staging:
        shutil.copytree(target_path, staging, dirs_exist_ok=True)


def read_target_contract(bundle_dir: str) -> dict | None:
    """The target contract a bundle states (``target_contract.json``), or None (our zoo's)."""
    path = os.path.join(bundle_dir, TARGET_CONTRACT)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def check_serves_task(converted: np.ndarray, measured: dict) -> None:
    """Refuses a converter that sends one and the same image for every photo: no claim of it can be true.

    Such a converter (a collapsed or diverged training) leaves the target nothing to tell photos
    apart by: it answers alike for all, at chance, whatever entropy and bandwidth figures say.

    Args:
        converted: The held-out images through the converter.
        measured: Their figures (``measure_claims``).

    Raises:
        DapterError: naming the figures.
    """
    if len(converted) > 1 and (converted == converted[:1]).all():
        accuracy = measured.get("accuracy_converted")
        answer = f"; the target then answers alike for every photo (accuracy {accuracy:.4f})" if accuracy is not None else ""
        raise DapterError(
            f"the converter sends one and the same image for all {len(converted)} held-out photos (entropy "
            f"{measured['entropy_converted']:.2f} bits){answer}: it cannot serve the task; nothing was released"
        )


def check_verifier_data(bundle_dir: str, task_name: str, target_label: str, image_size) -> None:
    """Refuses to verify a bundle on another task's data, another label, or another image size.

    A card's claims hold for the images it was measured on: re-measured on CelebA faces, a CIFAR-10
    converter's entropy and bandwidth figures say nothing, and a pass would be false comfort.

    Raises:
        DapterError: one line naming what differs.
    """
    card_path = os.path.join(bundle_dir, MODEL_CARD)
    if not os.path.isfile(card_path):
        return  # verify_bundle reports the missing card itself.
    with open(card_path) as f:
        card_task, card_label, card_size = parse_card_task(f.read())
    size = tuple(int(s) for s in image_size)
    differences = []
    if card_task != task_name:
        differences.append(f"task {task_name}, the bundle's is {card_task}")
    elif card_label != target_label:
        differences.append(f"target label {target_label}, the bundle's is {card_label}")
    if size != card_size:
        differences.append(f"images {size[0]}x{size[1]}, the bundle's are {card_size[0]}x{card_size[1]}")
    if differences:
        raise DapterError(
            f"the verifier's data do not match {bundle_dir} ({'; '.join(differences)}): give data of the bundle's task"
        )


@dataclasses.dataclass(frozen=True)
class Finding:
    """One check of ``verify_bundle``: a file's hash or a claim, and whether it held.

    A claim the verifier could not re-measure (no target, no ``--attacks``) is ``skipped``: it
    does not fail the bundle, and it is not reported as checked either.
    """

    subject: str
    ok: bool
    detail: str
    skipped: bool = False


def check_manifest(bundle_dir: str) -> list[Finding]:
    """Checks every file of the manifest against its SHA-256 and size, and that nothing else is in the bundle."""
    path = os.path.join(bundle_dir, MANIFEST)
    if not os.path.isfile(path):
        return [Finding(MANIFEST, False, "missing")]
    try:
        with open(path) as f:
            listed = json.load(f)["files"]
    except (ValueError, KeyError, TypeError) as e:
        return [Finding(MANIFEST, False, f"not a manifest ({type(e).__name__})")]
    findings = []
    for name, entry in sorted(listed.items()):
        file_path = os.path.join(bundle_dir, name)
        if not os.path.isfile(file_path):
            findings.append(Finding(name, False, "missing"))
        elif sha256(file_path) != entry["sha256"]:
            findings.append(
                Finding(
                    name, False, f"SHA-256 {sha256(file_path)[:16]}... is not the manifest's {entry['sha256'][:16]}..."
                )
            )
        else:
            findings.append(Finding(name, True, f"SHA-256 {entry['sha256'][:16]}... matches"))
    for name in sorted(set(os.listdir(bundle_dir)) - set(listed) - {MANIFEST}):
        findings.append(Finding(name, False, "not in the manifest"))
    return findings


def verify_bundle(
    bundle_dir: str,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    target: keras.Model | None = None,
    measured_elsewhere: dict | None = None,
) -> list[Finding]:
    """Checks a bundle's hashes and re-measures its card's claims on the verifier's images.

    Claims that need a target are reported as skipped (``ok`` True, ``skipped``) without one; so
    are the attack suite's claims unless ``measured_elsewhere`` has them.

    Args:
        bundle_dir: The bundle.
        images: The verifier's uint8 held-out images of the task.
        labels: Their target labels (with ``target``).
        target: A target of the task, to re-measure the accuracy claims.
        measured_elsewhere: ``{claim name: value}`` re-measured by the caller, as ``dapter-verify
            --attacks`` measures ``attack_max_ssim`` with an attacker of its own.

    Returns:
        One ``Finding`` per file and per claim; the bundle holds when every ``ok`` is True.
    """
    if not os.path.isdir(bundle_dir):
        raise DapterError(f"bundle folder not found: {bundle_dir}")
    findings = check_manifest(bundle_dir)
    card_path = os.path.join(bundle_dir, MODEL_CARD)
    if not os.path.isfile(card_path):
        return findings + [Finding(MODEL_CARD, False, "missing: no claims to check")]
    with open(card_path) as f:
        claims = parse_claims(f.read())
    check_images(claims, len(images), target is not None)
    converter_path = os.path.join(bundle_dir, CONVERTER)
    try:
        converter = keras.models.load_model(converter_path, compile=False, safe_mode=True)
    except Exception as e:  # A flipped byte can break the zip in many ways; all mean the same here.
        return findings + [Finding(CONVERTER, False, f"cannot be loaded ({type(e).__name__}): claims not checked")]
    try:
        check_finite(converter, converter_path)
    except DapterError:
        return findings + [Finding(CONVERTER, False, "holds non-finite weights (its training diverged): claims not checked")]
    tflite_files = {}
    for claim in claims:
        name = claim.name.split(":")[0]
        if ":" in claim.name and name not in tflite_files:
            path = os.path.join(bundle_dir, name)
            if not os.path.isfile(path):
                findings.append(Finding(name, False, f"named by claim {claim.name} but missing"))
                continue
            with open(path, "rb") as f:
                tflite_files[name] = f.read()
    try:
        measured = measure_claims(converter, tflite_files, images, labels, target)
    except Exception as e:  # A corrupted .tflite fails inside the interpreter.
        return findings + [Finding("claims", False, f"could not be measured ({type(e).__name__}: {e})")]
    measured.update(measured_elsewhere or {})
    for claim in claims:
        if claim.name not in measured:
            needs_target = claim.name.endswith("accuracy_drop_points") or claim.name.endswith("accuracy_drop_vs_keras")
            if needs_target and target is None:
                findings.append(Finding(claim.name, True, "skipped: needs the target (--target)", skipped=True))
            elif claim.name == ATTACK_SSIM_CLAIM:
                findings.append(Finding(claim.name, True, "skipped: needs a reconstruction attack (--attacks)", True))
            elif claim.name.startswith(f"{LABEL_GAP_CLAIM}."):
                findings.append(
                    Finding(claim.name, True, "skipped: only a full dapter-attack-suite run re-measures it", True)
                )
            else:
                findings.append(Finding(claim.name, False, "no way to measure it"))
            continue
        value = measured[claim.name]
        detail = f"card {format_value(claim.value)} ({claim.holds_if()}), measured {format_value(value)}"
        if claim.name.endswith(":accuracy_drop_vs_keras"):
            detail += " (the low end of the drop's 95 % interval)"
        detail += ": holds" if claim.holds(value) else ": does not hold"
        if is_accuracy_claim(claim.name):
            # The point figure decides the claim, as the card defines it; its noise says how sure that is.
            if claim.name == "accuracy_drop_points":
                drop, error = measured["accuracy_drop_points"], measured["accuracy_drop_error_points"]
            else:
                drop, error = measured[f"{claim.name}_points"], measured[f"{claim.name}_error"]
            detail += "; " + accuracy_confidence(claim.value + claim.tolerance, drop, error, len(images))
        findings.append(Finding(claim.name, claim.holds(value), detail))
    return findings


def check_verifier_images(bundle_dir: str, images: int, with_target: bool) -> None:
    """Refuses, before any image is loaded, a verification on fewer images than the card's claims need.

    A bundle without a readable card passes: ``verify_bundle`` reports the card itself.

    Raises:
        DapterError: one line with the number of images needed (``claims.images_needed``).
    """
    card_path = os.path.join(bundle_dir, MODEL_CARD)
    if not os.path.isfile(card_path):
        return
    try:
        with open(card_path) as f:
            claims = parse_claims(f.read())
    except DapterError:
        return  # verify_bundle reports the unreadable card, with the manifest's findings.
    check_images(claims, images, with_target)
