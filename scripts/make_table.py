#!/usr/bin/env python
"""Collect every metrics.json under RUNS_DIR into results/<name>.md, .csv and .png.

    python scripts/make_table.py multirun/table_cifar100_lt_full --name cifar100_lt --archive
    python scripts/make_table.py results/runs/cifar100_lt --name cifar100_lt   # the same table, again
    python scripts/make_table.py outputs/ --which best --name my_sweep

`--archive` first copies each run's metrics.json and config.yaml (a few KiB) to results/runs/<name>/ and
tabulates those copies: commit them with the table and anyone can make it again, byte for byte (`make table`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from ltkd import group_mass_table
from ltkd.group_mass_table import read_group_mass
from ltkd.results import (
    check_consistent,
    collect,
    is_reduced,
    load_published,
    plot_table,
    provenance,
    scan_runs,
    skipped_note,
    to_rows,
    write_table,
)

RUN_FILES = ("metrics.json", "config.yaml")  # what a table needs of a run, and what says how it was made


def archive(folders: list[Path], root: Path, dest: Path) -> None:
    """Copy the `RUN_FILES` of each run folder in `folders` (found under `root`) to the same relative folder
    under `dest`, which is replaced."""
    if root.resolve() == dest.resolve():
        return  # tabulating the archive itself
    shutil.rmtree(dest, ignore_errors=True)
    for folder in folders:
        target = dest / folder.resolve().relative_to(root.resolve())
        target.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            if (folder / name).is_file():
                shutil.copyfile(folder / name, target / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_dir", type=Path, help="folder searched recursively for metrics.json")
    parser.add_argument("--name", help="output name (default: the folder's name)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder (default results/)")
    parser.add_argument("--which", choices=("final", "best"), default="final",
                        help="final epoch (default, as the paper reports) or best test epoch")
    parser.add_argument("--archive", action="store_true",
                        help="copy each run's metrics.json and config.yaml to <out>/runs/<name>/ and tabulate those")
    args = parser.parse_args(argv)
    scan = scan_runs(args.runs_dir)
    paths = scan.paths
    if not paths:  # one line, naming what was found and why none of it can be tabulated
        found = "no readable run" if scan.skipped else "no metrics.json"
        print(f"error: {found} under {args.runs_dir}" + "".join(f"; {path}: {reason}" for path, reason in scan.skipped),
              file=sys.stderr)
        return 2
    name = args.name or args.runs_dir.resolve().name
    if args.archive:  # the skipped runs too: the table made again from the archive names them as this one does
        folders = {p.parent for p in paths} | {p.parent if p.name == "metrics.json" else p for p, _ in scan.skipped}
        archive(sorted(folders), args.runs_dir, args.out / "runs" / name)
        args.runs_dir = args.out / "runs" / name
        scan = scan_runs(args.runs_dir)
        paths = scan.paths
    for path, reason in scan.skipped:  # the rest is tabulated; the note under the table names these too
        print(f"skipped {path}: {reason}", file=sys.stderr)
    cells = collect(paths, args.which)
    try:
        check_consistent(cells)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reduced = is_reduced(cells)
    which = "" if args.which == "final" else f" --which {args.which}"
    header = (f"# {name}: {args.which}-epoch test accuracy (%)\n\n"
              f"From {len(paths)} runs under `{args.runs_dir}`, tabulated by "
              f"`python scripts/make_table.py {args.runs_dir} --name {name}{which}`. "
              "Each run's command, commit, device and date are in its metrics.json (`config`, `commit`, `device`, "
              "`date`). Paper columns: the published numbers (ltkd/published.csv); diff = ours - paper.")
    header += "\n\n" + provenance(paths)
    if reduced:
        header += ("\n\n**REDUCED SCALE (smoke/demo: fewer epochs or capped steps). These numbers check the "
                   "pipeline; they are not comparable to the paper.**")
    rows = to_rows(cells, load_published())
    out_base = args.out / name
    write_table(rows, out_base, header, footer=skipped_note(scan.skipped))
    plot_table(cells, out_base.with_suffix(".png"), f"{name} ({args.which} epoch)" + (" [reduced]" if reduced else ""))
    print(out_base.with_suffix(".md").read_text())
    print(f"wrote {out_base}.md, .csv, .png")
    mass_cells = collect(paths, read=read_group_mass)
    if mass_cells:  # runs that measured the teacher's bias (new runs; older ones via scripts/group_mass.py)
        mass_md = group_mass_table.write(mass_cells, paths, out_base, name + (" [reduced]" if reduced else ""),
                                         provenance(paths))
        print(mass_md.read_text())
        print(f"wrote {mass_md.with_suffix('')}.md, .csv, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
