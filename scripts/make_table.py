#!/usr/bin/env python
"""Collect every metrics.json under RUNS_DIR (one folder or several) into results/<name>.md, .csv and .png.

    python scripts/make_table.py multirun/table_cifar100_lt_full --name cifar100_lt --archive
    python scripts/make_table.py results/runs/cifar100_lt --name cifar100_lt   # the same table, again
    python scripts/make_table.py outputs/ --which best --name my_sweep
    python scripts/make_table.py multirun/sweep_a multirun/sweep_b --name both --archive   # two sweeps, one table

`--archive` first copies each run's metrics.json and config.yaml (a few KiB) to results/runs/<name>/ and
tabulates those copies: commit them with the table and anyone can make it again, byte for byte (`make table`).
Runs from several folders are archived under one sub-folder per folder, named as it is.
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


def archive(folders: list[Path], roots: list[Path], dest: Path) -> None:
    """Copy the `RUN_FILES` of each run folder in `folders` (found under one of `roots`) to the same relative
    folder under `dest` (several roots: under `dest/<root's name>/`), which is replaced."""
    if len(roots) == 1 and roots[0].resolve() == dest.resolve():
        return  # tabulating the archive itself
    shutil.rmtree(dest, ignore_errors=True)
    for folder in folders:
        root = next(r for r in roots if folder.resolve().is_relative_to(r.resolve()))
        target = dest / (root.resolve().name if len(roots) > 1 else "") / folder.resolve().relative_to(root.resolve())
        target.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            if (folder / name).is_file():
                shutil.copyfile(folder / name, target / name)


def _check_roots(roots: list[Path], name: str | None, archive_to: Path | None) -> str | None:
    """Why these folders cannot be tabulated (None: they can); `archive_to`: --archive's folder, or None."""
    resolved = [r.resolve() for r in roots]
    if any(a != b and a.is_relative_to(b) for a in resolved for b in resolved) or len(set(resolved)) < len(roots):
        return "runs_dir: one folder is given twice or lies inside another: " + " ".join(map(str, roots))
    if len(roots) > 1 and name is None:
        return "several runs_dir need --name"
    if archive_to is None:
        return None
    if len(roots) > 1 and len({r.name for r in resolved}) < len(roots):
        return "--archive keeps each folder's runs under its name, and two share one: " + " ".join(map(str, roots))
    if resolved != [archive_to.resolve()] and any(r.is_relative_to(archive_to.resolve()) for r in resolved):
        return f"--archive replaces {archive_to}, which holds a runs_dir: tabulate it without --archive"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_dirs", type=Path, nargs="+", metavar="runs_dir",
                        help="folder searched recursively for metrics.json (several: one table of all)")
    parser.add_argument("--name", help="output name (default: the folder's name)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder (default results/)")
    parser.add_argument("--which", choices=("final", "best"), default="final",
                        help="final epoch (default, as the paper reports) or best test epoch")
    parser.add_argument("--archive", action="store_true",
                        help="copy each run's metrics.json and config.yaml to <out>/runs/<name>/ and tabulate those")
    args = parser.parse_args(argv)
    name = args.name or args.runs_dirs[0].resolve().name
    if error := _check_roots(args.runs_dirs, args.name, args.out / "runs" / name if args.archive else None):
        print(f"error: {error}", file=sys.stderr)
        return 2
    scan = scan_runs(args.runs_dirs)
    paths = scan.paths
    where = " ".join(str(d) for d in args.runs_dirs)
    if not paths:  # one line, naming what was found and why none of it can be tabulated
        found = "no readable run" if scan.skipped else "no metrics.json"
        print(f"error: {found} under {where}" + "".join(f"; {path}: {reason}" for path, reason in scan.skipped),
              file=sys.stderr)
        return 2
    if args.archive:  # the skipped runs too: the table made again from the archive names them as this one does
        folders = {p.parent for p in paths} | {p.parent if p.name == "metrics.json" else p for p, _ in scan.skipped}
        archive(sorted(folders), args.runs_dirs, args.out / "runs" / name)
        args.runs_dirs = [args.out / "runs" / name]
        where = str(args.runs_dirs[0])
        scan = scan_runs(args.runs_dirs)
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
              f"From {len(paths)} runs under `{where}`, tabulated by "
              f"`python scripts/make_table.py {where} --name {name}{which}`. "
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
