"""make_table's teacher-bias table: the group masses (ltkd.group_mass) of teachers and students over seeds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ltkd.data import GROUP_NAMES
from ltkd.group_mass import DEFINITION, flatten
from ltkd.reporting import pyplot
from ltkd.results import Cell, fmt, write_table

SHOWN = ("imbalance_factor", "teacher", "student", "model", "seeds", "split", "T", *GROUP_NAMES)


def read_group_mass(metrics: dict, who: str) -> dict[str, float] | None:
    """A run's group masses of `who` as {"<split> T=<t> <group>": %} (None when the run has none), for
    `results.collect`."""
    return flatten(metrics.get("group_mass", {}), who) or None


def _settings(cell: Cell) -> list[str]:
    """The "<split> T=<t>" measured for a cell: splits in the order stored, temperatures ascending."""
    settings = list(dict.fromkeys(col.rsplit(" ", 1)[0] for col in cell.values))
    splits = list(dict.fromkeys(s.split(" ")[0] for s in settings))
    return sorted(settings, key=lambda s: (splits.index(s.split(" ")[0]), float(s.split("T=")[1])))


def to_rows(cells: Sequence[Cell]) -> list[dict[str, str]]:
    """One row per model, split and temperature: head / medium / tail mass as mean ± std over seeds."""
    rows = []
    for c in cells:
        for setting in _settings(c):
            split, temperature = setting.split(" ")
            row = {"dataset": c.dataset, "imbalance_factor": f"{c.imbalance_factor:g}", "teacher": c.teacher,
                   "student": c.student, "model": c.label, "seeds": str(len(c.seeds)), "split": split,
                   "T": temperature.removeprefix("T=")}
            rows.append(row | {g: fmt(c.mean(f"{setting} {g}"), c.std(f"{setting} {g}")) for g in GROUP_NAMES})
    return rows


def class_shares(paths: Sequence[Path]) -> dict[str, float]:
    """The groups' shares of the classes (the mass of a uniform prediction), from the first run that has it."""
    for path in paths:
        share = json.loads(path.read_text()).get("group_mass", {}).get("class_share")
        if share:
            return share
    return {}


def write(cells: Sequence[Cell], paths: Sequence[Path], out_base: Path, title: str, preamble: str) -> Path:
    """`<out_base>_group_mass.md`, `.csv` and `.png`; returns the .md path."""
    base = out_base.with_name(out_base.name + "_group_mass")
    share = class_shares(paths)
    header = (f"# {title}: group mass (%)\n\nDefinition: {DEFINITION}.\n\nClass share: "
              + ", ".join(f"{g} {share[g]:.2f}" for g in GROUP_NAMES if g in share) + ".\n\n" + preamble)
    write_table(to_rows(cells), base, header, shown=SHOWN)
    plot(cells, share, base.with_suffix(".png"), title)
    return base.with_suffix(".md")


def plot(cells: Sequence[Cell], share: dict[str, float], path: Path, title: str) -> None:
    """Grouped bars: head / medium / tail mass per model; one panel per split and T, one row per setting;
    black ticks mark each group's class share."""
    plt = pyplot()

    keys = sorted({c.key for c in cells}, key=str)
    settings = list(dict.fromkeys(s for c in cells for s in _settings(c)))
    fig, axes = plt.subplots(len(keys), len(settings), figsize=(3.6 * len(settings), 3.4 * len(keys)),
                             squeeze=False, sharey=True)
    for row, key in enumerate(keys):
        mine = [c for c in cells if c.key == key]
        width = 0.8 / len(mine)
        for col, setting in enumerate(settings):
            ax = axes[row][col]
            for i, c in enumerate(mine):
                heights = [c.mean(f"{setting} {g}") or 0.0 for g in GROUP_NAMES]
                ax.bar([x - 0.4 + (i + 0.5) * width for x in range(len(GROUP_NAMES))], heights, width, label=c.label)
            for x, g in enumerate(GROUP_NAMES):
                if g in share:
                    ax.hlines(share[g], x - 0.45, x + 0.45, colors="black", linewidth=1.5,
                              label="class share" if x == 0 else None)
            ax.set_xticks(range(len(GROUP_NAMES)), GROUP_NAMES)
            ax.set_title(f"γ={key[1]:g} {key[2]}→{key[3]}\n{setting}", fontsize=9)
            ax.set_ylim(0, 100)
        axes[row][0].set_ylabel("mean group mass (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
