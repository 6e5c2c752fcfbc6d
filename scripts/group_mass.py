#!/usr/bin/env python
"""Measure the group masses (ltkd.group_mass) of finished runs, post hoc, and store them in their metrics.json.

For every run under RUNS_DIR (metrics.json + config.yaml + student.pt): the teacher (metrics.json's
teacher source: the cache entry or teacher.checkpoint) and the student are evaluated on the run's
long-tailed training set without augmentation and on its test set, at T = 1 and T = loss.temperature;
the result goes into metrics.json under "group_mass" (what new runs write themselves), which
scripts/make_table.py collects. Runs that already have it are skipped (--force measures again).

    python scripts/group_mass.py multirun/cpu_scale_cifar100_lt_g100
    python scripts/group_mass.py ../cpuscale/multirun/cpu_scale_cifar100_lt_g100 --launch-dir ../cpuscale
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from ltkd.build import build_context
from ltkd.checkpoint import atomic_write_bytes
from ltkd.config import load_config
from ltkd.distillers import METHODS
from ltkd.errors import LTKDError
from ltkd.results import find_metrics
from ltkd.stages import read_teacher_file


def _under(base: Path, path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else base / path


def measure_run(run_dir: Path, launch_dir: Path, device: str | None) -> dict:
    """The group masses of the run in `run_dir` (paths in its records relative to `launch_dir`)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    raw = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
    raw["data"]["root"] = str(_under(launch_dir, raw["data"]["root"]))
    raw["data"]["download"] = False
    if device:
        raw["trainer"]["device"] = device
    # runs made before each method had its own loss config stored every method's keys: keep the method's
    method_keys = {f.name for f in dataclasses.fields(METHODS[raw["loss"]["name"]].config)}
    raw["loss"] = {k: v for k, v in raw["loss"].items() if k in method_keys}
    # runs made before teacher.objective existed trained their teacher with plain CE (τ does not act then)
    raw["teacher"] = {"objective": "ce", "tau": 1.0} | raw["teacher"]
    raw["pair"].pop("dkd_beta", None)  # runs made before DKD's beta moved to the loss side (its loss.beta)
    cfg = load_config(raw)
    cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, compile=False))
    ctx = build_context(cfg, run_dir)
    data = ctx.data
    models = {}
    for who, arch, path in (("teacher", cfg.teacher.arch, _under(launch_dir, metrics["teacher"]["source"])),
                            ("student", cfg.student.arch, run_dir / "student.pt")):
        models[who] = ctx.new_model(arch, who)
        models[who].load_state_dict(read_teacher_file(path, arch, data.num_classes)["state_dict"])
    return ctx.group_mass(models)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_dir", type=Path, help="folder searched recursively for metrics.json")
    parser.add_argument("--launch-dir", type=Path, default=Path("."),
                        help="where the runs were launched: relative data roots and teacher paths start there")
    parser.add_argument("--device", help="cpu, cuda, ... (default: the runs' trainer.device)")
    parser.add_argument("--force", action="store_true", help="measure runs that already have group masses")
    args = parser.parse_args(argv)
    paths = find_metrics(args.runs_dir)
    if not paths:
        print(f"error: no metrics.json under {args.runs_dir}", file=sys.stderr)
        return 2
    failed = 0
    for path in paths:
        metrics = json.loads(path.read_text())
        if "group_mass" in metrics and not args.force:
            print(f"{path.parent}: has group masses (--force measures again)")
            continue
        try:
            metrics["group_mass"] = measure_run(path.parent, args.launch_dir, args.device)
        except (LTKDError, OSError, KeyError) as exc:
            print(f"{path.parent}: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        atomic_write_bytes(path, (json.dumps(metrics, indent=1) + "\n").encode())
        teacher_test = metrics["group_mass"]["teacher"]["test"]["T=1"]
        print(f"{path.parent}: teacher test T=1 " + " / ".join(f"{k} {v:.2f}" for k, v in teacher_test.items()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
