"""dapter-tf: the reference TensorFlow/Keras implementation of DAPter (Wu et al., WWW 2021)."""

from setuptools import find_packages, setup

setup(
    name="dapter-tf",
    version="0.1.0",
    description="DAPter: a user-side converter that prevents data abuse in deep learning inference services",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(
        include=["dapter_tf", "dapter_tf.*", "cli", "experiments", "export", "android_app", "android_app.tools"]
    ),
    package_data={"dapter_tf": ["assets/*.npz", "assets/*.md", "synsets/*.tsv"]},
    install_requires=[
        "tensorflow-cpu==2.21.0; platform_machine == 'x86_64'",
        "tensorflow==2.21.0; platform_machine != 'x86_64'",
        "keras==3.15.1",
        "tensorboard==2.21.0",
        "tensorflow-datasets==4.9.10",
        "importlib_resources==7.1.0",
        "numpy==2.4.6",
        "scikit-image==0.26.0",
        "pillow==13.0.0",
        "absl-py==2.5.1",
        "ai-edge-litert==2.3.0",
        "matplotlib==3.11.2",
    ],
    extras_require={"test": ["pytest==9.2.0", "pytest-xdist==3.8.0", "selenium==4.50.0"]},
    entry_points={
        "console_scripts": [
            "dapter-demo=experiments.run_demo:run",
            "dapter-train-target=experiments.train_target:run",
            "dapter-train-dapter=experiments.train_dapter:run",
            "dapter-export-tflite=export.tflite.export_tflite:run",
            "dapter-benchmark-tflite=export.benchmark.benchmark_tflite:run",
            "dapter-release=export.release.release:run",
            "dapter-verify=export.release.verify:run",
            "dapter-convert=export.convert.convert:run",
            "dapter-lambda-sweep=experiments.lambda_sweep:run",
            "dapter-tune-lambda=experiments.tune_lambda:run",
            "dapter-attack=experiments.attack:run",
            "dapter-attack-suite=experiments.attack_suite:run",
            "dapter-protection-frontier=experiments.protection_frontier:run",
            "dapter-reconstruction-sweep=experiments.reconstruction_sweep:run",
            "dapter-score-labelling=experiments.score_labelling:run",
            "dapter-gradcam=experiments.gradcam:run",
            "dapter-bandwidth=experiments.bandwidth:run",
            "dapter-adb-benchmark=android_app.tools.adb_benchmark:run",
            "dapter-reproduce=experiments.reproduce:run",
            "dapter-write-records=experiments.write_records:run",
            "dapter-protect=experiments.protect:run",
        ],
    },
)
