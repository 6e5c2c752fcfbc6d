"""Human-readable outputs of a run: the console table and the per-class accuracy plot."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from ltkd.checkpoint import atomic_write_bytes

COLUMNS = ("head", "medium", "tail", "overall")


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def format_table(rows: Mapping[str, Mapping[str, float]], title: str = "",
                 columns: Sequence[str] = COLUMNS) -> str:
    """A fixed-width table: one row per model, columns head / medium / tail / overall (percent)."""
    width = max([len(name) for name in rows] + [8])
    lines = [title] if title else []
    lines.append(f"{'':<{width}}  " + "  ".join(f"{c:>7}" for c in columns))
    for name, acc in rows.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{acc[c]:7.2f}" for c in columns))
    return "\n".join(lines)


def plot_per_class(
    path: Path,
    train_counts: Sequence[int],
    groups: Mapping[str, Sequence[int]],
    curves: Mapping[str, Sequence[float]],
    title: str,
) -> None:
    """Save `per_class_figure` as a PNG."""
    plt = pyplot()

    fig = per_class_figure(train_counts, groups, curves, title)
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=120)
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, image.getvalue())


def per_class_figure(train_counts: Sequence[int], groups: Mapping[str, Sequence[int]],
                     curves: Mapping[str, Sequence[float]], title: str):
    """Per-class test accuracy with classes sorted by training count; head/medium/tail shaded; the
    training-image count of each class on the right axis; the legend below the plot."""
    plt = pyplot()

    order = [c for name in ("head", "medium", "tail") for c in groups[name]]
    fig, ax = plt.subplots(figsize=(10, 4.6))
    counts = ax.twinx()  # drawn below `ax`: the group bands and the training-count curve
    ax.set_zorder(counts.get_zorder() + 1)
    ax.patch.set_visible(False)
    start = 0
    for shade, name in zip(("#f2f2f2", "#e0e0e0", "#cccccc"), ("head", "medium", "tail"), strict=True):
        end = start + len(groups[name])
        counts.axvspan(start - 0.5, end - 0.5, color=shade, zorder=0)
        ax.text((start + end) / 2, 102, name, ha="center", va="bottom", fontsize=9)
        start = end
    x = range(len(order))
    sorted_counts = [train_counts[c] for c in order]
    counts.fill_between(x, sorted_counts, step="mid", color="#999999", alpha=0.3, zorder=1)
    lines = counts.step(x, sorted_counts, where="mid", color="#555555", linewidth=1.2, label="training images")
    counts.set_ylim(0, max(sorted_counts, default=1) * 1.1)
    counts.set_ylabel("training images", color="#555555")
    for label, per_class in curves.items():
        lines += ax.plot(x, [per_class[c] for c in order], marker=".", linewidth=1, label=label)
    ax.set_xlabel("class (sorted by training count)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 110)
    ax.set_xlim(-0.5, len(order) - 0.5)
    ax.set_title(title)
    # below the axes, so that it never covers a curve or a group label
    ax.legend(lines, [line.get_label() for line in lines], loc="upper center", bbox_to_anchor=(0.5, -0.14),
              ncol=len(lines), fontsize=9, frameon=False)
    fig.tight_layout()
    return fig
