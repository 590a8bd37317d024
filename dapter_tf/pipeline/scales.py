"""The scales a reproduction runs at: how many epochs, images and runs each experiment gets."""

import dataclasses

from dapter_tf.pipeline.datasets import EMBEDDED


@dataclasses.dataclass(frozen=True)
class Scale:
    """How big every experiment of the plan is; see ``SCALES``."""

    name: str
    description: str
    cifar_source: str  # "npz" (../shared/data) or "embedded" (the sample shipped with dapter_tf)
    max_train: int  # CIFAR training images (0: all 20,000 of train_20k.npz)
    max_test: int  # held-out images of every dataset (0: all)
    target_model: str
    target_width: int
    target_epochs: int
    dapter_epochs: int
    sweep_lambdas: str
    sweep_epochs: int
    sweep_max_train: int
    tune_finetune_epochs: int
    tune_max_rounds: int
    tune_val_images: int
    recon_epochs: int  # the attack suite's symmetric generator
    recon_train_images: int  # the attack suite's reconstruction training pairs
    suite_unet_epochs: int  # the attack suite's U-Net
    defended_epochs: int  # the defended converters (DEFENDED_RECIPES)
    celeba_suite_labels: str  # the attack suite's labelling attackers on CelebA
    ssim_recon_epochs: int  # Fig. 9(b): the attack on every converter of the sweep
    ssim_recon_train_images: int
    pretrain_epochs: int
    finetune_epochs: int
    cifar2_target_epochs: int
    cifar2_dapter_epochs: int
    face_size: int  # CelebA and LFW image side
    celeba_target_epochs: int
    celeba_dapter_epochs: int
    celeba_attack_labels: str
    table4_labels: tuple[str, ...]  # Table 4's other targets, besides the gender (Male) target
    lfw_target_epochs: int
    lfw_dapter_epochs: int
    lfw_pretrain_epochs: int
    lfw_finetune_epochs: int
    bench_image_size: int
    bench_runs: int
    train_step_steps: int
    face_datasets: bool  # whether CelebA and LFW steps are in the plan


SCALES = {
    "smoke": Scale(
        name="smoke",
        description="minutes on 2 CPU cores, the embedded CIFAR-10 sample only: checks an install and the "
        "plan's wiring, not the paper's numbers",
        cifar_source=EMBEDDED,
        max_train=256,
        max_test=128,
        target_model="lenet",
        target_width=0,
        target_epochs=1,
        dapter_epochs=1,
        sweep_lambdas="0.9,1.0",
        sweep_epochs=1,
        sweep_max_train=128,
        tune_finetune_epochs=1,
        tune_max_rounds=1,
        tune_val_images=64,
        recon_epochs=1,
        recon_train_images=128,
        suite_unet_epochs=1,
        defended_epochs=1,
        celeba_suite_labels="Smiling",
        ssim_recon_epochs=1,
        ssim_recon_train_images=128,
        pretrain_epochs=1,
        finetune_epochs=1,
        cifar2_target_epochs=1,
        cifar2_dapter_epochs=1,
        face_size=32,
        celeba_target_epochs=1,
        celeba_dapter_epochs=1,
        celeba_attack_labels="Smiling",
        table4_labels=("Eyeglasses",),
        lfw_target_epochs=1,
        lfw_dapter_epochs=1,
        lfw_pretrain_epochs=1,
        lfw_finetune_epochs=1,
        bench_image_size=64,
        bench_runs=2,
        train_step_steps=2,
        face_datasets=False,
    ),
    "cpu": Scale(
        name="cpu",
        description="under an hour on 2 CPU cores: every experiment on the real images of ../shared/data, "
        "with fewer images and epochs than the paper and 32x32 faces",
        cifar_source="npz",
        max_train=8000,
        max_test=2000,
        target_model="resnet18",
        target_width=16,
        target_epochs=8,
        dapter_epochs=4,
        sweep_lambdas="0,0.5,0.9,1.0",
        sweep_epochs=2,
        sweep_max_train=4000,
        tune_finetune_epochs=1,
        tune_max_rounds=2,
        tune_val_images=1000,
        recon_epochs=3,
        recon_train_images=4000,
        suite_unet_epochs=6,
        defended_epochs=6,
        celeba_suite_labels="Smiling",
        ssim_recon_epochs=3,
        ssim_recon_train_images=4000,
        pretrain_epochs=2,
        finetune_epochs=2,
        cifar2_target_epochs=6,
        cifar2_dapter_epochs=3,
        face_size=32,
        celeba_target_epochs=5,
        celeba_dapter_epochs=8,
        celeba_attack_labels="Wearing_Lipstick,Heavy_Makeup,Smiling",
        table4_labels=("Eyeglasses",),
        lfw_target_epochs=10,
        lfw_dapter_epochs=8,
        lfw_pretrain_epochs=10,
        lfw_finetune_epochs=4,
        bench_image_size=224,
        bench_runs=10,
        train_step_steps=20,
        face_datasets=True,
    ),
    "paper": Scale(
        name="paper",
        description="the settings of the committed results/ runs (WORKSPACE.md's commands): all training "
        "images, the full lambda grid of Fig. 8, the tuner, eight correlated attributes and four Table 4 "
        "targets; days on 2 CPU cores, hours on a GPU",
        cifar_source="npz",
        max_train=0,
        max_test=0,
        target_model="resnet18",
        target_width=32,
        target_epochs=15,
        dapter_epochs=5,
        sweep_lambdas="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95,0.97,0.99,1.0",
        sweep_epochs=3,
        sweep_max_train=8000,
        tune_finetune_epochs=2,
        tune_max_rounds=10,
        tune_val_images=2000,
        recon_epochs=10,
        recon_train_images=0,
        suite_unet_epochs=20,
        defended_epochs=20,
        celeba_suite_labels="Smiling,Young",
        ssim_recon_epochs=10,
        ssim_recon_train_images=0,
        pretrain_epochs=8,
        finetune_epochs=5,
        cifar2_target_epochs=12,
        cifar2_dapter_epochs=5,
        face_size=32,
        celeba_target_epochs=12,
        celeba_dapter_epochs=8,
        celeba_attack_labels="Wearing_Lipstick,Heavy_Makeup,No_Beard,Attractive,Young,Arched_Eyebrows,"
        "High_Cheekbones,Smiling",
        table4_labels=("Arched_Eyebrows", "Bangs", "Eyeglasses", "Wearing_Lipstick"),
        lfw_target_epochs=30,
        lfw_dapter_epochs=20,
        lfw_pretrain_epochs=30,
        lfw_finetune_epochs=10,
        bench_image_size=224,
        bench_runs=30,
        train_step_steps=30,
        face_datasets=True,
    ),
}
