"""Tables from runs: collect every metrics.json under a folder into the paper-style table.

Rows: teacher, then CE, KD, DKD, ReviewKD, LTKD for each (dataset, γ, pair); columns head, medium,
tail, overall as mean ± std over seeds; the paper's published numbers beside ours where known.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ltkd.config import ADDED_WITH_DEFAULT, key_role, run_identity
from ltkd.distillers import METHODS
from ltkd.recipes import recipe_epochs
from ltkd.reporting import COLUMNS, pyplot

METHOD_ORDER = ("teacher", *METHODS)
PUBLISHED = Path(__file__).resolve().parent / "published.csv"


@dataclass
class Cell:
    """One table row: a method on one (dataset, γ, teacher, student), over seeds."""

    dataset: str
    imbalance_factor: float
    teacher: str
    student: str
    method: str
    variant: str = ""  # the settings that tell apart runs of one method (e.g. "alpha=2, beta=8")
    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    seeds: list[int] = field(default_factory=list)
    scales: set[tuple[int, int | None]] = field(default_factory=set)
    wall_time_s: list[float] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)  # each seed's metrics.json, in the order of `seeds`

    @property
    def key(self) -> tuple:
        return (self.dataset, self.imbalance_factor, self.teacher, self.student)

    @property
    def label(self) -> str:
        return f"{self.method} ({self.variant})" if self.variant else self.method

    def mean(self, column: str) -> float | None:
        vals = self.values.get(column)
        return statistics.fmean(vals) if vals else None

    def std(self, column: str) -> float | None:
        vals = self.values.get(column)
        return statistics.stdev(vals) if vals and len(vals) > 1 else None


def find_metrics(root: Path) -> list[Path]:
    return sorted(root.rglob("metrics.json"))


RUN_KEYS = ("dataset", "imbalance_factor", "teacher_arch", "student_arch", "loss", "seed", "epochs", "teacher",
            "student")  # what `collect` needs of every metrics.json


@dataclass
class Scan:
    """The runs under a folder: the metrics.json files that can be tabulated, and what was left out (each a
    (path, reason) pair: an unreadable metrics.json, or a run folder whose metrics.json is missing)."""

    paths: list[Path]
    skipped: list[tuple[Path, str]]


def _unreadable(path: Path) -> str | None:
    """Why the metrics.json at `path` cannot be tabulated (None when it can)."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    if not text.strip():
        return "empty file"
    try:
        metrics = json.loads(text)
    except ValueError as exc:  # truncated or not JSON (UnicodeDecodeError is a ValueError too)
        return f"not valid JSON, truncated? ({' '.join(str(exc).split())})"
    if not isinstance(metrics, dict):
        return f"a JSON {type(metrics).__name__}, not an object"
    missing = [key for key in RUN_KEYS if key not in metrics]
    return f"lacks {', '.join(missing)}" if missing else None


def scan_runs(roots: Sequence[Path]) -> Scan:
    """Every metrics.json under `roots` that can be tabulated; the others, and every run folder (one with a
    config.yaml, which a run writes first) that has no metrics.json, as skipped."""
    paths, skipped = [], []
    for root in roots:
        for path in find_metrics(root):
            reason = _unreadable(path)
            if reason is None:
                paths.append(path)
            else:
                skipped.append((path, reason))
        skipped += [(config.parent, "no metrics.json (a run not finished, or half-written)")
                    for config in sorted(root.rglob("config.yaml"))
                    if config.parent.name != ".hydra" and not (config.parent / "metrics.json").exists()]
    return Scan(paths, sorted(skipped))


def skipped_note(skipped: Sequence[tuple[Path, str]]) -> str:
    """The note under a table that names what was left out of it ("" when nothing was)."""
    if not skipped:
        return ""
    return "\n".join(["Skipped (not in the table):", *(f"- `{path}`: {reason}" for path, reason in skipped)])


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return flat


def _differing(runs: list[dict]) -> list[dict[str, object]]:
    """For runs of one setting: each run's config values at the keys in which they are different runs
    (`ltkd.config.run_identity`, as the resume check compares them: a key added since with its default, or
    removed since, tells none apart), but the seed, which rows average over."""
    identities = [run_identity(m.get("config", {})) for m in runs]
    flats = [_flatten(m.get("config", {})) for m in runs]

    def differ(key: str, views: list[dict]) -> bool:
        return len({repr(v.get(key)) for v in views}) > 1

    # a loss key some runs lack was stored by runs made before each loss had its own keys: it never mattered;
    # a key the identity drops where it does not act (teacher.tau of a CE teacher) but stored alike: no split
    keys = sorted({k for i in identities for k in i if k != "seed" and differ(k, identities) and differ(k, flats)
                   and not (k.startswith("loss.") and any(k not in i for i in identities))})
    return [{k: f[k] if k in f else ADDED_WITH_DEFAULT.get(k) for k in keys} for f in flats]


def _label(values: dict[str, object]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in values.items())


def _variants(runs: list[dict]) -> list[str]:
    """For runs of one method on one setting: a label of the config values in which each run differs."""
    return [_label(d) for d in _differing(runs)]


def _teacher_variants(runs: list[dict]) -> list[str]:
    """For all runs of one setting: a label of the settings of the teacher's stage (`key_role`: read by it) in
    which they differ, so that two different teachers (e.g. `teacher.objective`, or a batch size) are two rows,
    not one row of two "seeds"."""
    return [_label({k: v for k, v in d.items() if key_role(k)[1]}) for d in _differing(runs)]


def accuracies(which: str) -> Callable[[dict, str], dict[str, float] | None]:
    """The values `collect` tabulates by default: the `which` ("final" / "best") head, medium, tail, overall
    test accuracy of the run's teacher or student."""
    return lambda m, who: {col: m[who][which][col] for col in COLUMNS}


def collect(paths: Iterable[Path], which: str = "final",
            read: Callable[[dict, str], dict[str, float] | None] | None = None) -> list[Cell]:
    """Group runs into cells (one per method and variant, seeds averaged); each pair's teacher row counts each
    distinct (seed, teacher) once. `read(metrics, "teacher" | "student")` gives a run's values by column
    (default: `accuracies(which)`; None: the run has none)."""
    read = read or accuracies(which)
    paths = list(paths)
    runs = [json.loads(path.read_text()) for path in paths]
    source = {id(m): path for m, path in zip(runs, paths, strict=True)}
    by_method: dict[tuple, list[dict]] = defaultdict(list)
    by_setting: dict[tuple, list[dict]] = defaultdict(list)
    for m in runs:
        key = (m["dataset"], float(m["imbalance_factor"]), m["teacher_arch"], m["student_arch"], m["loss"])
        by_method[key].append(m)
        by_setting[key[:-1]].append(m)
    teacher_variant = {id(m): v for group in by_setting.values()
                       for m, v in zip(group, _teacher_variants(group), strict=True)}
    cells: dict[tuple, Cell] = {}
    teacher_columns: dict[tuple, set[str]] = {}  # per teacher stage, the columns already counted

    def add(cell: Cell, values: dict[str, float], m: dict, wall: float | None) -> None:
        for col, value in values.items():
            cell.values[col].append(float(value))
        cell.seeds.append(m["seed"])
        cell.sources.append(source[id(m)])
        cell.scales.add((m["epochs"], m.get("max_steps_per_epoch")))
        if wall:
            cell.wall_time_s.append(float(wall))

    for (*base, loss), group in by_method.items():
        for m, variant in zip(group, _variants(group), strict=True):
            if (values := read(m, "student")) is not None:
                add(cells.setdefault((*base, loss, variant), Cell(*base, loss, variant)), values, m,
                    m["student"].get("wall_time_s"))
            teacher_label, teacher_values = teacher_variant[id(m)], read(m, "teacher")
            if teacher_values is None:
                continue
            # one teacher stage is counted once; a later student of it adds only columns the earlier ones lacked
            # (its group mass at another temperature)
            teacher_id = (*base, m["seed"], teacher_label)  # listed with each student it taught
            cell = cells.setdefault((*base, "teacher", teacher_label), Cell(*base, "teacher", teacher_label))
            if teacher_id not in teacher_columns:
                teacher_columns[teacher_id] = set(teacher_values)
                add(cell, teacher_values, m, m["teacher"].get("wall_time_s"))
                continue
            for col, value in teacher_values.items():
                if col not in teacher_columns[teacher_id]:
                    cell.values[col].append(float(value))
                    teacher_columns[teacher_id].add(col)
    order = {name: i for i, name in enumerate(METHOD_ORDER)}
    return sorted(cells.values(), key=lambda c: (c.dataset, -c.imbalance_factor, c.teacher, c.student,
                                                 order.get(c.method, len(order)), c.method, c.variant))


def provenance(paths: Iterable[Path]) -> str:
    """Where the runs came from: commits, devices, dates and the commands that made them."""
    runs = [json.loads(p.read_text()) for p in paths]

    def distinct(key: str) -> str:
        return ", ".join(sorted({str(m.get(key)) for m in runs if m.get(key)})) or "unknown"

    dates = sorted(m["date"][:10] for m in runs if m.get("date"))
    commands = sorted({m["command"] for m in runs if m.get("command")})
    lines = [f"Runs: commit {distinct('commit')}; device {distinct('device')}; "
             f"dates {dates[0] + ' to ' + dates[-1] if dates else 'unknown'}."]
    if commands:
        lines.append("Commands (one per job; sweeps list each job's overrides):")
        lines.extend(f"- `{c}`" for c in commands)
    return "\n".join(lines)


def load_published(path: Path = PUBLISHED) -> dict[tuple, dict[str, float]]:
    rows = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    published = {}
    for row in csv.DictReader(rows):
        key = (row["dataset"], float(row["imbalance_factor"]), row["teacher"], row["student"], row["method"])
        published[key] = {c: float(row[c]) for c in COLUMNS if row[c]}
    return published


def fmt(mean: float | None, std: float | None) -> str:
    if mean is None:
        return ""
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def is_reduced(cells: Iterable[Cell]) -> bool:
    """True when any run was cut short of its dataset's recipe (fewer epochs, or capped steps: smoke/demo
    scale): such tables are not comparable to the paper."""
    return any(steps is not None or epochs < recipe_epochs(c.dataset) for c in cells for epochs, steps in c.scales)


def check_consistent(cells: Iterable[Cell]) -> None:
    """Refuse to average runs of different lengths into one cell, or one seed twice as if two seeds."""
    for c in cells:
        if len(c.scales) > 1:
            raise ValueError(f"{c.label} on {c.key}: runs of different scale {sorted(c.scales, key=str)} "
                             "would be averaged together; tabulate them separately")
        twice = sorted({s for s in c.seeds if c.seeds.count(s) > 1})
        if twice:
            runs = " ".join(str(p.parent) for s, p in zip(c.seeds, c.sources, strict=True) if s == twice[0])
            raise ValueError(f"{c.label} on {c.key}: seed {twice[0]} would be counted twice, by runs that differ "
                             f"only in keys that do not change results or one run found twice: {runs}; "
                             "tabulate one of them")


def to_rows(cells: list[Cell], published: dict[tuple, dict[str, float]]) -> list[dict[str, str]]:
    rows = []
    for c in cells:
        paper = {} if c.variant else published.get((*c.key, c.method), {})
        row = {"dataset": c.dataset, "imbalance_factor": f"{c.imbalance_factor:g}", "teacher": c.teacher,
               "student": c.student, "method": c.label, "seeds": str(len(set(c.seeds))),
               "epochs": ",".join(f"{e}" + (f"x{s}steps" if s else "") for e, s in sorted(c.scales, key=str))}
        for col in COLUMNS:
            row[col] = fmt(c.mean(col), c.std(col))
        for col in ("tail", "overall"):
            row[f"paper_{col}"] = f"{paper[col]:.2f}" if col in paper else ""
            ours = c.mean(col)
            row[f"diff_{col}"] = f"{ours - paper[col]:+.2f}" if col in paper and ours is not None else ""
        row["wall_time_min"] = f"{statistics.fmean(c.wall_time_s) / 60:.1f}" if c.wall_time_s else ""
        rows.append(row)
    return rows


ACCURACY_SHOWN = ("imbalance_factor", "teacher", "student", "method", "seeds", "epochs", *COLUMNS,
                  "paper_tail", "diff_tail", "paper_overall", "diff_overall", "wall_time_min")


NOTES_HEADING = "## Reading"  # a person's reading of a table, below it in the .md: kept when it is made again


def write_table(rows: list[dict[str, str]], out_base: Path, header: str,
                shown: Sequence[str] = ACCURACY_SHOWN, footer: str = "") -> None:
    """`<out_base>.csv` (every field) and `<out_base>.md` (the `shown` ones, then `footer` if any, then the
    existing .md's section from its first `NOTES_HEADING` line on, if any)."""
    out_base.parent.mkdir(parents=True, exist_ok=True)
    fields = list(rows[0]) if rows else []
    with open(out_base.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    md = [header, ""]
    md.append("| " + " | ".join(shown) + " |")
    md.append("|" + "---|" * len(shown))
    for row in rows:
        md.append("| " + " | ".join(row[k] for k in shown) + " |")
    if footer:
        md += ["", footer]
    md_path = out_base.with_suffix(".md")
    notes = _notes(md_path.read_text()) if md_path.exists() else ""
    md_path.write_text("\n".join(md) + "\n" + (f"\n{notes}" if notes else ""))


def _notes(markdown: str) -> str:
    """The section of `markdown` from its first `NOTES_HEADING` line to the end ("" when there is none)."""
    lines = markdown.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith(NOTES_HEADING)), None)
    return "" if start is None else "".join(lines[start:])


def plot_table(cells: list[Cell], path: Path, title: str) -> None:
    """Save `table_figure` as a PNG."""
    plt = pyplot()

    fig = table_figure(cells, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table_figure(cells: list[Cell], title: str):
    """Tail and overall accuracy per method, grouped by γ, each bar labelled with its value; one row of
    panels per pair; one legend below the panels (a method has the same colour in every panel)."""
    plt = pyplot()

    pairs = sorted({(c.dataset, c.teacher, c.student) for c in cells})
    colours = {method: f"C{i % 10}" for i, method in enumerate(dict.fromkeys(c.label for c in cells))}
    ncol = min(len(colours), 3)
    legend_rows = math.ceil(len(colours) / ncol)
    legend_height = 0.1 + 0.22 * legend_rows  # inches
    fig, axes = plt.subplots(len(pairs), 2, figsize=(11, 3.2 * len(pairs) + legend_height), squeeze=False)
    for row, pair in enumerate(pairs):
        mine = [c for c in cells if (c.dataset, c.teacher, c.student) == pair]
        gammas = sorted({c.imbalance_factor for c in mine}, reverse=True)
        methods = list(dict.fromkeys(c.label for c in mine))
        width = 0.8 / max(len(methods), 1)
        for col, metric in enumerate(("tail", "overall")):
            ax = axes[row][col]
            top = 0.0
            for i, method in enumerate(methods):
                heights = [next((c.mean(metric) for c in mine if c.label == method and c.imbalance_factor == g),
                                None) for g in gammas]
                shown = [math.nan if h is None else h for h in heights]  # a missing cell: no bar, no label
                bars = ax.bar([x + i * width for x in range(len(gammas))], shown, width, label=method,
                              color=colours[method])
                ax.bar_label(bars, labels=["" if h is None else f"{h:.1f}" for h in heights], fontsize=7)
                top = max([top, *(h for h in heights if h is not None)])
            ax.set_xticks([x + 0.4 - width / 2 for x in range(len(gammas))], [f"γ={g:g}" for g in gammas])
            ax.set_ylim(0, max(top, 1.0) * 1.15)  # accuracy axis from 0, also when every value is 0
            ax.set_ylabel(f"{metric} accuracy (%)")
            ax.set_title(f"{pair[1]} → {pair[2]}: {metric}")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour) for colour in colours.values()]
    fig.legend(handles, list(colours), loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, legend_height / fig.get_figheight(), 1, 1))
    return fig
