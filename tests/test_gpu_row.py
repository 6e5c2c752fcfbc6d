"""scripts/gpu_row.sh end to end on the CPU at smoke size (LTKD_ROW_DEVICE=cpu: a rehearsal on purpose), in a
stand-in for a bare PyTorch node (wheels installed offline, no git on PATH): the whole row, then on a fresh
state from the returned teacher, first out of budget (75) and then to the end, without retraining the
teacher and with the same numbers. Every exit leaves the timings so far and the returned teacher in OUT."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, TOY

ROW_SMOKE = [o for o in TOY if o.startswith(("trainer=", "dataset.", "teacher.", "student."))] + ["deterministic=true"]
TOOLS = ("bash", "cat", "cp", "date", "dirname", "find", "grep", "gzip", "mkdir", "sed", "sleep", "tail", "tar",
         "tee", "timeout", "touch", "xz")


@pytest.fixture(scope="module")
def bare_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH with the few tools the script needs and no git."""
    bin_dir = tmp_path_factory.mktemp("bin")
    for tool in TOOLS:
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    assert not (bin_dir / "git").exists()
    return str(bin_dir)


def gpu_row(data: Path, wheelhouse: Path, out: Path, python: Path, state: Path, path: str, **env: str):
    env = {"PATH": path, "PYTHON": str(python), "LTKD_ROW_STATE": str(state), "LTKD_ROW_JOBS": "2",
           "LTKD_ROW_DEVICE": "cpu", "LTKD_ROW_ARGS": " ".join(ROW_SMOKE), "LTKD_COMMIT": "abc1234", **env}
    return subprocess.run(["bash", str(ROOT / "scripts" / "gpu_row.sh"), str(data), str(wheelhouse), str(out), "5m"],
                          capture_output=True, text=True, env=env, timeout=900)


def finals(out: Path) -> dict[str, tuple]:
    """Each run's loss -> (teacher final, student final) from the packed metrics.json files."""
    with tarfile.open(out / "gpu_row.tar.gz") as tar:
        metrics = [json.load(tar.extractfile(m)) for m in tar.getmembers() if m.name.endswith("metrics.json")]
    return {m["loss"]: (m["teacher"]["final"], m["student"]["final"], m["commit"]) for m in metrics}


@pytest.mark.slow  # three passes of the row at smoke size: ~3.5 min on 2 cores
def test_gpu_row_returns_its_progress_and_resumes_from_the_returned_teacher_on_a_fresh_node(
        wheelhouse: Path, torch_image: Path, fake_cifar_root: Path, tmp_path: Path, bare_path: str):
    first = gpu_row(fake_cifar_root, wheelhouse, tmp_path / "out1", torch_image, tmp_path / "state1", bare_path)
    assert first.returncode == 0, first.stdout[-3000:]
    out1 = tmp_path / "out1"
    assert sorted(p.name for p in out1.iterdir()) == ["gpu_row.log", "gpu_row.md", "gpu_row.tar.gz", "progress.json",
                                                      "selfcheck.log", "teacher.pt"]
    assert all(p.stat().st_size < 16 * 2**20 for p in out1.iterdir())
    done = finals(out1)
    assert sorted(done) == ["ce", "dkd", "kd", "ltkd", "reviewkd"]
    assert {commit for *_, commit in done.values()} == {"abc1234"}  # no git: the commit from LTKD_COMMIT
    progress = json.loads((out1 / "progress.json").read_text())
    assert {r["status"] for r in progress["runs"].values()} == {"done"} and len(progress["runs"]) == len(done)
    assert all(e["time_s"] > 0 for r in progress["runs"].values() for e in r["history"])  # per-epoch timings
    (teacher,) = progress["teachers"].values()
    assert teacher["status"] == "done" and teacher["history"]
    with tarfile.open(out1 / "gpu_row.tar.gz") as tar:
        names = set(tar.getnames())
        environment = json.load(tar.extractfile("pack/environment.json"))
    assert {"pack/gpu_row.md", "pack/gpu_row.csv", "pack/selfcheck.log", "pack/progress.json"} <= names
    assert environment["commit"] == "abc1234" and environment["gpu"] is None
    assert "teacher" in (out1 / "gpu_row.md").read_text()

    # a fresh node: the returned teacher carried in, the budget spent at once: 75, the teacher not retrained
    returned, state2, out2 = out1 / "teacher.pt", tmp_path / "state2", tmp_path / "out2"
    spent = gpu_row(fake_cifar_root, wheelhouse, out2, torch_image, state2, bare_path,
                    LTKD_ROW_TEACHER=str(returned), LTKD_LAUNCH_TIME=repr(time.time() - 3600))
    assert spent.returncode == 75, spent.stdout[-3000:]
    assert "teacher imported into the cache" in spent.stdout and "run the same command again" in spent.stdout
    assert spent.stdout.count("returned teacher:") == 1  # exported once, by the watcher, waited for at the end
    assert {"progress.json", "teacher.pt", "gpu_row.tar.gz", "selfcheck.log"} <= {p.name for p in out2.iterdir()}
    assert not list((state2 / "cache").glob("*.ckpt"))  # no teacher training was started

    resumed = gpu_row(fake_cifar_root, wheelhouse, out2, torch_image, state2, bare_path, LTKD_ROW_TEACHER=str(returned))
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "teacher already in the cache" in resumed.stdout and "[teacher] loaded from cache" in resumed.stdout
    assert "== self-check" not in resumed.stdout  # passed once on this state, not repeated
    assert not list((state2 / "cache").glob("*.ckpt"))
    assert finals(out2) == done  # the same teacher and students as on the first node (deterministic, fp32)


def test_the_plan_is_printed_without_running_anything(tmp_path: Path, bare_path: str):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_row.sh"), "--plan"], capture_output=True, text=True,
                          env={"PATH": bare_path}, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for phase in ("machine start", "self-check", "teacher", "students LTKD, KD, DKD, CE", "ReviewKD", "pack"):
        assert phase in proc.stdout
    assert not list(tmp_path.iterdir())


def test_without_a_gpu_the_row_refuses_unless_asked_to_rehearse(torch_image: Path, fake_cifar_root: Path,
                                                                 tmp_path: Path, bare_path: str):
    proc = gpu_row(fake_cifar_root, Path("none"), tmp_path / "out", torch_image, tmp_path / "state", bare_path,
                   LTKD_ROW_DEVICE="cuda")
    assert proc.returncode != 0
    assert "error: no CUDA device; the row trains on a GPU only" in proc.stdout
    assert not (tmp_path / "state" / "multirun").exists()
