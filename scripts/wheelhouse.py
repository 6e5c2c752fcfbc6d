#!/usr/bin/env python
"""Collect the wheels an offline GPU node needs to run ltkd: ltkd itself and every runtime dependency that a
stock PyTorch GPU image lacks (Hydra, OmegaConf, the ANTLR runtime, the joblib launcher), never torch or
torchvision. Version ranges are ltkd's own (its wheel's metadata). Needs a package index (run it where there
is one).

    python scripts/wheelhouse.py --out wheelhouse                          # Python 3.12, manylinux x86-64
    python scripts/wheelhouse.py --out wheelhouse --python 3.11 --platform manylinux2014_aarch64 --with wandb

On the node (no index, torch untouched):
    python3 -m pip install --no-index --no-deps --target /tmp/ltkd-site wheelhouse/*.whl
    PYTHONPATH=/tmp/ltkd-site python3 -m ltkd.train logger=none ...
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# ltkd's dependencies that stock PyTorch GPU images (pytorch/pytorch, NGC) do not ship
MISSING_ON_TORCH_IMAGES = ("hydra-core", "omegaconf", "hydra-joblib-launcher")
OPTIONAL = ("wandb", "hydra-submitit-launcher")  # W&B logging, Slurm launching: --with NAME
# omegaconf's pin of its parser runtime, published on PyPI as a source archive only: built here
ANTLR_RUNTIME = "antlr4-python3-runtime==4.9.*"


def requirements(ltkd_wheel: Path, names: list[str]) -> list[str]:
    """ltkd's requirement strings (with their version ranges, from the wheel's metadata) for `names`."""
    with zipfile.ZipFile(ltkd_wheel) as wheel:
        metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        lines = wheel.read(metadata).decode().splitlines()
    declared = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]
    by_name = {re.split(r"[<>=!~ \[;(]", req, maxsplit=1)[0].lower(): req for req in declared}
    return [by_name[name] for name in names]


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "wheelhouse")
    parser.add_argument("--python", default="3.12", help="the node's Python version")
    parser.add_argument("--platform", default="manylinux2014_x86_64", help="the node's wheel platform tag")
    parser.add_argument("--with", dest="extras", action="append", default=[], choices=OPTIONAL,
                        help="also these optional dependencies (repeatable)")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.whl"):
        old.unlink()
    pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(ROOT), ANTLR_RUNTIME)
    pip("download", "--quiet", "--only-binary=:all:", "--python-version", args.python, "--platform", args.platform,
        "--find-links", str(out), "--dest", str(out),
        *requirements(next(out.glob("ltkd-*.whl")), [*MISSING_ON_TORCH_IMAGES, *args.extras]))
    wheels = sorted(p.name for p in out.glob("*.whl"))
    size = sum(p.stat().st_size for p in out.glob("*.whl"))
    print(f"{len(wheels)} wheels, {size / 2**20:.1f} MiB in {out}:\n  " + "\n  ".join(wheels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
