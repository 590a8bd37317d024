"""The λ study's figures: Fig. 8's sweep and the accuracy-entropy frontier the tuner walks."""

from dapter_tf.figures import pyplot, save_figure


def plot_sweep(sweep: dict, path: str, title: str, max_drop_points: float = 3.0) -> None:
    """Draws Fig. 8 for one task: target accuracy and mean entropy of converted images against lambda."""
    plt = pyplot()

    points = sweep["points"]
    lambdas = [p["lambda"] for p in points]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(lambdas, [p["accuracy_converted"] for p in points], "o-", color="tab:blue", label="accuracy (converted)")
    ax.axhline(points[0]["accuracy_original"], color="tab:blue", ls=":", label="accuracy (originals)")
    ax.axhline(
        points[0]["accuracy_original"] - max_drop_points / 100,
        color="tab:gray",
        ls="--",
        lw=0.8,
        label=f"originals - {max_drop_points:g} points",
    )
    ax.set_xlabel("λ")
    ax.set_ylabel("target accuracy", color="tab:blue")
    ax.set_ylim(0, 1)
    right = ax.twinx()
    right.plot(lambdas, [p["entropy_converted"] for p in points], "s-", color="tab:red", label="entropy (converted)")
    right.axhline(points[0]["entropy_original"], color="tab:red", ls=":", label="entropy (originals)")
    right.set_ylabel("mean image entropy (bits)", color="tab:red")
    right.set_ylim(0, 24)
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="lower left", fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def plot_frontier(series: dict, path: str, title: str, tuner=None) -> None:
    """Draws accuracy drop against entropy ratio for sweeps and tuner rounds, with the target corner.

    Args:
        series: Label -> list of points (sweep points or tuner rounds).
        path: The PNG to write.
        title: The figure's title.
        tuner: Draws its criteria as the corner to reach.
    """
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    drops = [p["accuracy_drop_points"] for ps in series.values() for p in ps]
    bottom = min(-2.0, *drops)
    if tuner is not None:
        ax.fill_between(
            [0, tuner.max_entropy_ratio],
            bottom,
            tuner.max_drop_points,
            color="tab:green",
            alpha=0.12,
            label="paper's targets (both met)",
        )
        ax.axhline(tuner.max_drop_points, color="tab:green", ls="--", lw=0.8)
        ax.axvline(tuner.max_entropy_ratio, color="tab:green", ls="--", lw=0.8)
    for (label, points), marker in zip(series.items(), "os^vD<>"):
        x = [p["entropy_ratio"] for p in points]
        y = [p["accuracy_drop_points"] for p in points]
        ax.plot(x, y, marker + "-", label=label, ms=4, lw=1)
        for p, xi, yi in zip(points, x, y):
            ax.annotate(f"{p['lambda']:.2f}", (xi, yi), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("entropy of converted / original images")
    # Linear up to 10 points, logarithmic beyond: the corner that matters stays readable next to
    # lambda = 1's collapse.
    ax.set_yscale("symlog", linthresh=10)
    ticks = [t for t in (-10, -5, 0, 3, 5, 10, 20, 50, 100) if bottom <= t <= max(10, *drops) * 1.2]
    ax.set_yticks(ticks, [str(t) for t in ticks])
    ax.set_ylabel("target accuracy drop (points; log above 10)")
    ax.set_xlim(0, 1.05)
    ax.set_ylim(bottom=bottom)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
