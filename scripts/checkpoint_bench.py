#!/usr/bin/env python
"""Time of one training checkpoint of the headline row's teacher: `ltkd.checkpoint.save_checkpoint` and
`load_checkpoint` of the state a resnet32x4 teacher stage writes (weights, SGD momentum, schedule, RNG
states, a 240-epoch history), median of a few repeats, and the file's size; the share of a stage's time
it costs when written every `--every` epochs of `--epoch-s` seconds.

    python scripts/checkpoint_bench.py                      # into results/bench/checkpoint-<device>.{json,md}
    PYTHONPATH=../old-checkout python scripts/checkpoint_bench.py --label before   # another commit's ltkd
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import ltkd
from ltkd.checkpoint import load_checkpoint, save_checkpoint
from ltkd.models import create_model
from ltkd.runtime import rng_state


def teacher_state(epochs: int) -> dict:
    """What the teacher stage checkpoints: resnet32x4 after an SGD step, and a full history."""
    torch.manual_seed(0)
    model = create_model("resnet32x4", 100)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[150, 180, 210], gamma=0.1)
    model(torch.randn(2, 3, 32, 32))[0].sum().backward()
    optimizer.step()
    record = {"epoch": 1, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "time_s": 1.0, "train/loss": 4.6,
              "train/loss_ce": 4.6, "train/acc": 1.0, "test/overall": 1.0, "test/head": 1.0, "test/medium": 1.0,
              "test/tail": 1.0}
    history = [dict(record, epoch=e) for e in range(1, epochs + 1)]
    return {"stage": "teacher", "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": rng_state(), "next_epoch": epochs + 1, "skip_steps": 0,
            "partial": None, "tracker": {"best": None, "best_epoch": 0, "final": None, "history": history,
                                         "wall": 1.0}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=240, help="history length in the state")
    parser.add_argument("--every", type=int, default=20, help="epochs between checkpoints (the row's)")
    parser.add_argument("--epoch-s", type=float, default=0.9,
                        help="seconds per teacher epoch assumed for the share (H200 estimate: 0.7-1.0)")
    parser.add_argument("--label", default="", help="suffix of the report's name (e.g. before / after)")
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    args = parser.parse_args()
    state = teacher_state(args.epochs)
    payload = sum(t.numel() * t.element_size() for t in state["model"].values())
    payload += sum(t.numel() * t.element_size() for s in state["optimizer"]["state"].values() for t in s.values()
                   if isinstance(t, torch.Tensor))
    saves, loads = [], []
    with tempfile.TemporaryDirectory(dir=args.out.parent if args.out.parent.exists() else None) as tmp:
        path = Path(tmp) / "teacher.ckpt"
        for _ in range(args.repeats):
            start = time.perf_counter()
            save_checkpoint(path, state)
            saves.append(time.perf_counter() - start)
            start = time.perf_counter()
            load_checkpoint(path)
            loads.append(time.perf_counter() - start)
        size = path.stat().st_size
    # the commit of the ltkd that was timed (PYTHONPATH may point at another checkout than this script's)
    commit = subprocess.run(["git", "-C", str(Path(ltkd.__file__).parent), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    save_s = statistics.median(saves)
    report = {"commit": commit or None, "device": f"cpu-{os.cpu_count()}cores",
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": " ".join(["python", *sys.argv]),
              "repeats": args.repeats, "file_mib": size / 2**20, "tensor_payload_mib": payload / 2**20,
              "save_s": saves, "load_s": loads, "save_median_s": save_s, "load_median_s": statistics.median(loads),
              "every": args.every, "epoch_s": args.epoch_s,
              "share_of_stage": save_s / (args.every * args.epoch_s)}
    name = f"checkpoint-{report['device']}" + (f"-{args.label}" if args.label else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    md = [f"# Checkpoint cost on {report['device']}" + (f" ({args.label})" if args.label else ""), "",
          f"`{report['command']}` with ltkd at commit {commit}, {report['date']}: resnet32x4 teacher stage state "
          f"({payload / 2**20:.1f} MiB of tensors), median of {args.repeats}.", "",
          "| file (MiB) | save (s) | load (s) | share of the stage, every "
          f"{args.every} epochs of {args.epoch_s:g} s |", "|---|---|---|---|",
          f"| {size / 2**20:.1f} | {save_s:.2f} | {report['load_median_s']:.2f} | "
          f"{100 * report['share_of_stage']:.1f} % |"]
    (args.out / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
