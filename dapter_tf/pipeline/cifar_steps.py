"""The plan's CIFAR steps (``plan.build_plan``): CIFAR-10, Cifar2:10 and the host benchmarks."""

from dapter_tf.pipeline.datasets import EMBEDDED


def add_cifar10(plan) -> None:
    """CIFAR-10: the target task of §7.1, the λ study and the reconstruction attack of §7.3.3."""
    plan.add_target_and_converter(
        "cifar10", plan.cifar, plan.cifar_data, plan.scale.target_epochs, plan.scale.dapter_epochs
    )
    plan.add(
        "cifar10/sweep",
        "experiments.lambda_sweep",
        [
            *plan.cifar,
            f"--lambdas={plan.scale.sweep_lambdas}",
            f"--epochs={plan.scale.sweep_epochs}",
            f"--max_train={plan.scale.sweep_max_train}",
            f"--target={plan.target('cifar10')}",
            f"--workdir={plan.w('cifar10/sweep')}",
        ],
        "§7.1 Fig. 8: accuracy and entropy against lambda",
        after=["cifar10/target"],
    )
    plan.add(
        "cifar10/tune",
        "experiments.tune_lambda",
        [
            *plan.cifar,
            "--epochs=1",
            f"--finetune_epochs={plan.scale.tune_finetune_epochs}",
            f"--max_rounds={plan.scale.tune_max_rounds}",
            f"--val_images={plan.scale.tune_val_images}",
            f"--init_converter={plan.w('cifar10/dapter')}",
            f"--target={plan.target('cifar10')}",
            f"--workdir={plan.w('cifar10/tune')}",
        ],
        "§7.1 tuning strategy: lambda in steps of 0.02 until both indices hold",
        after=["cifar10/dapter"],
    )

    plan.add_protection("cifar10", plan.cifar, plan.cifar_data)
    plan.add(
        "cifar10/ssim_sweep",
        "experiments.reconstruction_sweep",
        [
            *plan.cifar,
            *plan.ssim_recon,
            f"--max_train={plan.scale.sweep_max_train}",
            f"--sweep_dir={plan.w('cifar10/sweep')}",
            "--name=CIFAR-10",
            f"--workdir={plan.w('cifar10/ssim_sweep')}",
        ],
        "§7.1 Fig. 9(b): reconstruction SSIM against lambda",
        after=["cifar10/sweep"],
    )


def add_cifar10_analysis(plan) -> None:
    """CIFAR-10's converter analysed: Grad-CAM, bandwidth and its .tflite files."""
    plan.add(
        "cifar10/gradcam",
        "experiments.gradcam",
        [
            *plan.cifar,
            f"--targets=label={plan.target('cifar10')}",
            f"--converters=label={plan.w('cifar10/dapter')}",
            f"--workdir={plan.w('cifar10/gradcam')}",
        ],
        "§7.2 Fig. 10: Grad-CAM attention of the target on original and converted images",
        after=["cifar10/dapter"],
    )
    plan.add(
        "cifar10/bandwidth",
        "experiments.bandwidth",
        [
            *plan.cifar,
            f"--converter={plan.w('cifar10/dapter')}",
            "--name=CIFAR-10",
            "--sizes=0",
            f"--workdir={plan.w('bandwidth')}",
        ],
        "§7.4: PNG and JPEG bytes of converted against original images",
        after=["cifar10/dapter"],
    )
    plan.add(
        "cifar10/export",
        "export.tflite.export_tflite",
        [
            *plan.cifar,
            f"--workdir={plan.w('cifar10/dapter')}",
            "--modes=float32,int8",
            "--calibration_steps=100",
            f"--output_dir={plan.w('cifar10/export')}",
        ],
        "§3.2.2: the converter as .tflite files (float32, int8), each checked against Keras",
        after=["cifar10/dapter"],
    )


def add_benchmarks(plan) -> None:
    """The host benchmarks: the converter's latency, and the training step's throughput."""
    plan.add(
        "bench/export",
        "bench.bench_export",
        [
            f"--converter={plan.w('cifar10/dapter')}",
            f"--image_size={plan.scale.bench_image_size}",
            "--small_size=0",
            "--layer_runs=0",
            f"--num_runs={plan.scale.bench_runs}",
            "--warmup_runs=2",
            f"--output_json={plan.w('bench/export.json')}",
        ],
        "§7.4: host latency of the converter (Keras, float32 and int8 TFLite) at the phone's image size",
        (EMBEDDED,),
        ["cifar10/dapter"],
        seeded=False,  # bench_export times a fixed, embedded set of images
    )
    plan.add(
        "bench/train_step",
        "bench.bench_train_step",
        [
            f"--steps={plan.scale.train_step_steps}",
            "--warmup_steps=2",
            f"--output_json={plan.w('bench/train_step.json')}",
        ],
        "training throughput: the custom loop against keras.Model.fit",
        (EMBEDDED,),
    )


def add_cifar2_10(plan) -> None:
    """Cifar2:10, the offline stand-in for Cifar20:100: the uncorrelated attack of §7.3.1 (Fig. 11)."""
    cifar2 = ["--dataset=cifar2_10", *plan.cifar]
    plan.add_target_and_converter(
        "cifar2_10", cifar2, plan.cifar_data, plan.scale.cifar2_target_epochs, plan.scale.cifar2_dapter_epochs
    )
    plan.add(
        "cifar2_10/attack",
        "experiments.attack",
        [
            *cifar2,
            "--attacks=auto_recognition",
            f"--pretrained=label={plan.target('cifar10')}",
            f"--finetune_epochs={plan.scale.finetune_epochs}",
            f"--target={plan.target('cifar2_10')}",
            f"--converter={plan.w('cifar2_10/dapter')}",
            f"--workdir={plan.w('cifar2_10/attack')}",
        ],
        "§7.3.1 Fig. 11: auto-recognition of the 10 classes, uncorrelated with the vehicle/animal target",
        after=["cifar2_10/dapter", "cifar10/target"],
    )
    # The adversary's classifier of the 10 classes is the CIFAR-10 target, as in the attack above.
    plan.add_protection(
        "cifar2_10",
        cifar2,
        plan.cifar_data,
        [f"--suite_pretrained=label={plan.target('cifar10')}"],
        ["cifar10/target"],
    )
