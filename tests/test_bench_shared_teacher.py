"""scripts/bench.py --shared-teacher: the row's students with the teacher's outputs shared vs recomputed."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ltkd.models import create_model
from tests.helpers import ROOT

spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench.py")
bench_shared = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_shared)


def test_forward_macs_of_the_headline_pair_match_their_published_cost():
    teacher = bench_shared.forward_macs(create_model("resnet32x4", 100), 32)
    student = bench_shared.forward_macs(create_model("resnet8x4", 100), 32)
    assert teacher / 1e9 == pytest.approx(1.08, abs=0.01) and student / 1e9 == pytest.approx(0.18, abs=0.01)


def test_row_speedup_counts_one_teacher_pass_for_all_students():
    assert bench_shared.row_speedup(teacher_s=2.0, student_s=1.0, students=1) == 1.0
    assert bench_shared.row_speedup(teacher_s=2.0, student_s=1.0, students=7) == pytest.approx(21 / 9)
    assert bench_shared.row_speedup(teacher_s=0.0, student_s=1.0, students=7) == 1.0


@pytest.mark.slow  # about a minute on 2 shared cores: seven students, twice each
def test_bench_times_the_students_shared_and_recomputed(fake_cifar_root: Path, tmp_path: Path):
    args = ["--shared-teacher", "--device", "cpu", "--steps", "1", "--warmup", "0", "--data-root",
            str(fake_cifar_root), "--out", str(tmp_path), "dataset.n_max=12", "teacher.arch=resnet8",
            "student.arch=resnet8", "trainer.batch_size=16"]
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), *args], capture_output=True,
                          text=True, cwd=tmp_path, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    (report,) = [json.loads(p.read_text()) for p in tmp_path.glob("*-shared-teacher.json")]
    assert set(report["students"]) == set(bench_shared.STUDENTS) and len(report["students"]) == 7
    assert report["shared_s"] == pytest.approx(report["teacher_pass_s"]
                                               + sum(s["shared_s"] for s in report["students"].values()))
    assert proc.stdout.count("teacher outputs shared in") == 7
