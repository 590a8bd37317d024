"""Plots of the attacks: Fig. 11 (uncorrelated), Fig. 12 (correlated) and Fig. 9(b) (SSIM against lambda)."""

import numpy as np

from dapter_tf.figures import pyplot, save_figure

# The paper's bar for an unrecoverable image (§7.1, [33]).
SSIM_BAR = 0.2


def _finish(fig, ax, path: str, title: str, ylabel: str, legend_size: int = 7) -> None:
    """Labels a [0, 1] axis, puts the legend beside it, saves the PNG atomically and closes the figure."""
    ax.set_ylim(0, 1)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=legend_size, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    save_figure(fig, path)


def plot_uncorrelated(results, path: str, title: str) -> None:
    """Fig. 11: the target task's and the attack task's accuracy on original and converted images.

    Args:
        results: ``AutoRecognitionResult``s (one group of bars each).
        path: The PNG to write.
        title: The plot's title.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(2.2 + 2.4 * len(results), 3.6))
    groups = []
    for r in results:
        groups += [
            (f"target\n({r.target_loss_points:+.1f} pts)", r.target_accuracy_original, r.target_accuracy_converted),
            (
                f"attack: {r.attack_label}\n({r.attack_loss_points:+.1f} pts)",
                r.attack_accuracy_original,
                r.attack_accuracy_converted,
            ),
        ]
    x = np.arange(len(groups))
    ax.bar(x - 0.2, [g[1] for g in groups], 0.4, label="original images", color="#4477aa")
    ax.bar(x + 0.2, [g[2] for g in groups], 0.4, label="converted images", color="#ee6677")
    for r_index, r in enumerate(results):
        span = (2 * r_index + 0.6, 2 * r_index + 1.4)
        first = r_index == 0
        ax.hlines(r.majority_accuracy, *span, colors="k", linestyles=":", label="majority class" if first else None)
        if r.acc_best_given_target is not None:
            ax.hlines(
                r.acc_best_given_target,
                *span,
                colors="k",
                linestyles="--",
                label="knowing only the target label" if first else None,
            )
    ax.set_xticks(x, [g[0] for g in groups], fontsize=8)
    _finish(fig, ax, path, title, "accuracy", legend_size=8)


def plot_correlated(results, path: str, title: str) -> None:
    """Fig. 12: per attack attribute, the attack's accuracy beside the ideal protection's (Eq. 6).

    Args:
        results: ``AutoRecognitionResult``s with ``acc_ideal_hat`` (binary target and attack labels).
        path: The PNG to write.
        title: The plot's title.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(results), 3.8))
    x = np.arange(len(results))
    series = (
        ("Acc_vanilla (original images)", [r.attack_accuracy_original for r in results], "#bbbbbb"),
        ("attack on converted images", [r.attack_accuracy_converted for r in results], "#ee6677"),
        ("Acc_ideal x Acc_vanilla (Eq. 6)", [r.acc_ideal_hat for r in results], "#4477aa"),
        ("best given the target label", [r.acc_best_given_target for r in results], "#228833"),
    )
    width = 0.2
    for k, (label, values, color) in enumerate(series):
        ax.bar(x + (k - 1.5) * width, values, width, label=label, color=color)
    ax.set_xticks(x, [r.attack_label.replace("_", "\n") for r in results], fontsize=7)
    _finish(fig, ax, path, title, "attack accuracy")


def plot_ssim_against_lambda(series: dict, path: str, title: str) -> None:
    """Fig. 9(b): reconstruction SSIM against lambda, one line per converter family.

    Args:
        series: Name -> points from ``reconstruction.reconstruction_sweep``.
        path: The PNG to write.
        title: The plot's title.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, points in series.items():
        points = sorted(points, key=lambda p: p["lambda"])
        (line,) = ax.plot([p["lambda"] for p in points], [p["ssim"] for p in points], "o-", label=name)
        floors = [p["ssim_mean_image"] for p in points if p.get("ssim_mean_image") is not None]
        if floors:
            # What one fixed image (the training images' mean) scores: a reconstruction no better
            # than this has learnt nothing of the image it was given.
            ax.axhline(
                np.mean(floors), color=line.get_color(), linestyle="--", linewidth=0.8, label=f"{name}: the mean image"
            )
    ax.axhline(SSIM_BAR, color="k", linestyle=":", label=f"SSIM {SSIM_BAR} (paper: below it at lambda 0.9)")
    ax.axvline(0.9, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("lambda")
    _finish(fig, ax, path, title, "SSIM of reconstructed images")
