#!/usr/bin/env python
"""Write the score and the surviving mutants of the last `mutmut run` to docs/quality/<label>.md / .json.

    python scripts/mutation_report.py --label mutation   # after `mutmut run` (make mutation does both)

Score = killed / tested (mutmut's own: timeouts count as killed, skipped mutants are not tested). Each
survivor is listed with its diff, to be killed by a test or explained in docs/quality/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: mutmut depends on `toml` there
    import toml as tomllib

ROOT = Path(__file__).resolve().parent.parent


def mutmut(*args: str) -> str:
    """stdout of the mutmut CLI next to this Python, run in the repository root."""
    exe = Path(sys.executable).with_name("mutmut")
    return subprocess.run([str(exe), *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def changed_lines(diff: str) -> list[str]:
    """The -/+ lines of a unified diff, without the file headers."""
    return [line for line in diff.splitlines() if line[:1] in "-+" and not line.startswith(("---", "+++"))]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", default="mutation", help="output name under --out (default: mutation)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "quality")
    args = parser.parse_args(argv)
    mutmut("export-cicd-stats")
    stats = json.loads((ROOT / "mutants" / "mutmut-cicd-stats.json").read_text())
    statuses = dict(line.strip().rsplit(": ", 1) for line in mutmut("results").splitlines() if ": " in line)
    stats["not_checked"] = sum(status == "not checked" for status in statuses.values())  # an interrupted run
    statuses = {name: status for name, status in statuses.items() if status != "not checked"}
    tested = stats["total"] - stats["skipped"] - stats["not_checked"]
    score = 100.0 * (stats["killed"] + stats["timeout"]) / max(tested, 1)
    survivors = {name: changed_lines(mutmut("show", name)) for name in sorted(statuses)}
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    dirty = "+dirty" if git("status", "--porcelain", "--untracked-files=no") else ""
    provenance = {"command": "make mutation (" + " ".join(sys.argv) + ")", "commit": git("rev-parse", "--short",
                  "HEAD") + dirty, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  "device": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                  "mutated": settings["only_mutate"], "tests": settings["pytest_add_cli_args_test_selection"]}
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"score_percent": round(score, 1), "stats": stats, **provenance,
              "not_killed": {name: {"status": statuses[name], "diff": survivors[name]} for name in survivors}}
    (args.out / f"{args.label}.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# Mutation score: {score:.1f}% ({stats['killed'] + stats['timeout']} of {tested} mutants killed)", "",
             *(f"- {key}: {', '.join(value) if isinstance(value, list) else value}"
               for key, value in provenance.items()),
             f"- counts: {', '.join(f'{k} {v}' for k, v in stats.items() if v)}", "",
             f"## Not killed ({len(survivors)})", "", "| mutant | status | change |", "|---|---|---|"]
    for name, diff in survivors.items():
        change = "<br>".join(f"`{line.strip()}`".replace("|", "\\|") for line in diff)
        lines.append(f"| {name} | {statuses[name]} | {change} |")
    (args.out / f"{args.label}.md").write_text("\n".join(lines) + "\n")
    print(f"mutation score {score:.1f}%; wrote {args.out / args.label}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
