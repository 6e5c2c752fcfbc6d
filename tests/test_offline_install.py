"""Offline nodes: the wheelhouse installs with --no-index (torch untouched) into a bare torch environment
and runs the smoke config there, without wandb or submitit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import toy_overrides


def test_wheelhouse_installs_offline_and_runs_the_smoke_config(wheelhouse: Path, torch_image: Path,
                                                               fake_cifar_root: Path, tmp_path: Path):
    def python(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(torch_image), *args], capture_output=True, text=True, cwd=tmp_path,
                              env={"PATH": "/usr/bin:/bin", **env}, timeout=600)

    assert python("-c", "import torch, torchvision").returncode == 0
    assert "No module named 'hydra'" in python("-c", "import hydra").stderr  # the stand-in lacks it
    wheels = sorted(str(p) for p in wheelhouse.glob("*.whl"))
    assert not [w for w in wheels if Path(w).name.startswith(("torch", "nvidia"))]
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--target",
                              str(site), *wheels], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    where = python("-c", "import ltkd, importlib.util as u; print(ltkd.__file__, u.find_spec('wandb'), "
                         "u.find_spec('submitit'))", PYTHONPATH=str(site))
    assert where.stdout.split() == [str(site / "ltkd" / "__init__.py"), "None", "None"], where.stderr
    run_dir = tmp_path / "run"
    run = python("-m", "ltkd.train", *toy_overrides(fake_cifar_root, tmp_path / "cache", f"hydra.run.dir={run_dir}"),
                 PYTHONPATH=str(site))
    assert run.returncode == 0, run.stderr[-2000:]
    assert (run_dir / "metrics.json").exists()
