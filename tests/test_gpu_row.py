"""scripts/gpu_row.sh end to end on the CPU at smoke size, in a stand-in for a bare PyTorch node: wheels
installed offline, self-check, the row as a parallel sweep, the packed results; out of budget it exits 75
and the same command then finishes the row."""

from __future__ import annotations

import json
import subprocess
import tarfile
import time
from pathlib import Path

from tests.conftest import TOY
from tests.test_train import ROOT

ROW_SMOKE = [o for o in TOY if o.startswith(("trainer=", "dataset.", "teacher.", "student."))]


def gpu_row(data: Path, wheelhouse: Path, out: Path, python: Path, state: Path, **env: str):
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(python), "LTKD_ROW_STATE": str(state), "LTKD_ROW_JOBS": "2",
           "LTKD_ROW_ARGS": " ".join(ROW_SMOKE), **env}
    return subprocess.run(["bash", str(ROOT / "scripts" / "gpu_row.sh"), str(data), str(wheelhouse), str(out), "5m"],
                          capture_output=True, text=True, env=env, timeout=600)


def test_gpu_row_runs_end_to_end_and_resumes_after_running_out_of_budget(wheelhouse: Path, torch_image: Path,
                                                                        fake_cifar_root: Path, tmp_path: Path):
    out, state = tmp_path / "out", tmp_path / "state"
    spent = gpu_row(fake_cifar_root, wheelhouse, out, torch_image, state, LTKD_LAUNCH_TIME=repr(time.time() - 3600))
    assert spent.returncode == 75, spent.stdout[-3000:]
    assert "re-run the same command to continue" in spent.stdout
    with tarfile.open(out / "gpu_row.tar.gz") as tar:
        names = tar.getnames()
    assert "pack/selfcheck.log" in names and not [n for n in names if n.endswith("metrics.json")]

    done = gpu_row(fake_cifar_root, wheelhouse, out, torch_image, state)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "CUDA self-check" not in done.stdout  # passed once, not repeated
    files = sorted(p.name for p in out.iterdir())
    assert files == ["gpu_row.log", "gpu_row.md", "gpu_row.tar.gz"]
    assert all(p.stat().st_size < 16 * 2**20 for p in out.iterdir())
    with tarfile.open(out / "gpu_row.tar.gz") as tar:
        metrics = [json.load(tar.extractfile(m)) for m in tar.getmembers() if m.name.endswith("metrics.json")]
        environment = json.load(tar.extractfile("pack/environment.json"))
        names = set(tar.getnames())
    assert sorted(m["loss"] for m in metrics) == ["ce", "dkd", "kd", "ltkd", "reviewkd"]
    assert len({m["teacher"]["source"] for m in metrics}) == 1  # one cached teacher for the row
    assert all(r["time_s"] > 0 for m in metrics for r in m["student"]["history"])  # per-epoch timings
    assert {"pack/gpu_row.md", "pack/gpu_row.csv", "pack/gpu_row.png", "pack/selfcheck.log"} <= names
    assert {"gpu", "torch", "cuda", "python", "commit"} <= set(environment)
    table = (out / "gpu_row.md").read_text()
    assert all(method in table for method in ("teacher", "ce", "kd", "dkd", "reviewkd", "ltkd"))
