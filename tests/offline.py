"""A stand-in for a bare GPU node on this machine: a Python environment with what a stock PyTorch image has
(torch, torchvision, numpy, ...) but none of ltkd's other dependencies, and the wheelhouse for it."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# distributions a stock PyTorch image lacks (ltkd's own editable install included): hidden from the stand-in
ABSENT = re.compile(r"^(hydra|omegaconf|antlr4|wandb|submitit|ltkd|_ltkd|__editable__)|\.pth$", re.IGNORECASE)


def torch_image_python(where: Path) -> Path:
    """A fresh venv that sees this environment's packages except ABSENT ones (through one .pth file)."""
    venv.create(where / "env", with_pip=False)
    image = where / "image-site-packages"
    image.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not ABSENT.search(entry.name):
            (image / entry.name).symlink_to(entry)
    python = where / "env" / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "torch_image.pth").write_text(f"{image}\n")
    return python


def build_wheelhouse(out: Path) -> subprocess.CompletedProcess:
    """`scripts/wheelhouse.py` for this machine's Python and platform (needs the package index)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "wheelhouse.py"), "--out", str(out),
                           "--python", version], capture_output=True, text=True, timeout=600)
