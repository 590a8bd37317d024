"""``run_attacks``: the one entry point that runs any of the three attacks of §5 against a converter."""

import os

from dapter_tf import evaluate, models
from dapter_tf.attacks import auto_recognition, labelling, plotting, reconstruction
from dapter_tf.attacks.data_structures import AttackInputData, AutoRecognitionSpec, ReconstructionSpec, VisualSpec
from dapter_tf.errors import DapterError
from dapter_tf.records import runs
from dapter_tf.records.attacks import AttackResults, AttackType, VisualResult

RESULTS_FILE = "attacks.json"
SUMMARY_FILE = "summary.txt"

_SPEC_TYPES = {
    AutoRecognitionSpec: AttackType.AUTO_RECOGNITION,
    ReconstructionSpec: AttackType.RECONSTRUCTION,
    VisualSpec: AttackType.VISUAL_RECOGNITION,
}


def run_attacks(input_data: AttackInputData, specs, workdir: str) -> AttackResults:
    """Runs each attack of ``specs`` against ``input_data``'s converter and saves the results.

    Everything is validated before anything trains. Each attack works in its own folder of
    ``workdir`` (``auto_recognition/``, ``reconstruction/``, ``visual_recognition/``), whose
    training runs resume when the same call is repeated after a crash.

    Args:
        input_data: The task, images, converter and target.
        specs: ``AutoRecognitionSpec``, ``ReconstructionSpec`` and ``VisualSpec`` objects, at most
            one of each kind.
        workdir: Where the attacks work, and where ``attacks.json`` (``AttackResults.save``),
            ``summary.txt`` and the plots go.

    Returns:
        The results of every attack.

    Raises:
        DapterError: on bad input data or specs, before anything is written.
    """
    kinds = [_SPEC_TYPES.get(type(spec)) for spec in specs]
    if not specs or None in kinds:
        raise DapterError("run_attacks needs AutoRecognitionSpec, ReconstructionSpec or VisualSpec objects")
    if len(set(kinds)) != len(kinds):
        raise DapterError("give at most one spec of each attack kind")
    input_data.validate()
    for spec in specs:
        spec.validate(input_data.task)
    if AttackType.AUTO_RECOGNITION in kinds and not input_data.target_path:
        raise DapterError("the auto-recognition attack needs the target model (target_path)")
    converter = models.load_converter(input_data.converter_path)
    target = models.load_target(input_data.target_path, input_data.target_contract) if input_data.target_path else None
    input_data.check_target(target)
    os.makedirs(workdir, exist_ok=True)

    results = []
    for kind, spec in zip(kinds, specs):
        folder = os.path.join(workdir, kind.value)
        if kind is AttackType.AUTO_RECOGNITION:
            found = auto_recognition.run_auto_recognition(input_data, spec, folder, converter, target)
            _plot_auto_recognition(found, input_data, workdir)
            results += found
        elif kind is AttackType.RECONSTRUCTION:
            results.append(reconstruction.run_reconstruction(input_data, spec, folder, converter))
        else:
            results.append(_write_visual_kit(input_data, spec, folder, converter))
    found = AttackResults(input_data.task.name, input_data.converter_path, input_data.target_path, tuple(results))
    found.save(os.path.join(workdir, RESULTS_FILE))
    with open(os.path.join(workdir, SUMMARY_FILE), "w") as f:
        f.write(found.summary() + "\n")
    return found


def _plot_auto_recognition(results, input_data: AttackInputData, workdir: str) -> None:
    task = input_data.task
    converter = os.path.basename(os.path.dirname(os.path.abspath(input_data.converter_path)))
    lambda_ = runs.converter_lambda(input_data.converter_path)
    at = "" if lambda_ is None else f" (lambda {lambda_:g})"
    title = f"{task.description}\nauto-recognition against converter {converter}{at}"
    correlated = [r for r in results if r.acc_ideal_hat is not None]
    if correlated:
        plotting.plot_correlated(correlated, os.path.join(workdir, "correlated.png"), title)
    else:
        plotting.plot_uncorrelated(results, os.path.join(workdir, "uncorrelated.png"), title)


def _write_visual_kit(input_data: AttackInputData, spec: VisualSpec, folder: str, converter) -> VisualResult:
    test = input_data.test
    attributes = spec.labels_for(input_data.task)
    converted = evaluate.convert_images(converter, test.images)
    page, key, items = labelling.write_kit(
        converted, test.labels, folder, attributes, spec.per_class, spec.seed, spec.title, names=test.names
    )
    result = VisualResult(page, key, tuple(attributes), items)
    print(f"   {result.summary()}", flush=True)
    return result
