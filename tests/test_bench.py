"""scripts/bench.py: the headline row's projected wall time, sequential vs parallel students."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ltkd.distillers import METHODS
from tests.helpers import ROOT

spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_parallel_students_share_the_device_but_never_beat_the_longest_one():
    teacher, students = 30.0, [10.0, 20.0, 25.0, 40.0, 15.0]
    alone = bench.row_wall_times(teacher, students, speedup=1.0)
    assert alone["sequential_min"] == alone["parallel_min"] == teacher + sum(students)
    shared = bench.row_wall_times(teacher, students, speedup=2.0)
    assert shared["parallel_min"] == pytest.approx(teacher + sum(students) / 2)
    ideal = bench.row_wall_times(teacher, students, speedup=100.0)
    assert ideal["parallel_min"] == teacher + max(students)
    slower = bench.row_wall_times(teacher, students, speedup=0.5)  # contention can make it worse: reported
    assert slower["parallel_min"] > slower["sequential_min"]


@pytest.mark.slow  # a minute or two on 2 shared cores: every loss, the reference loop, two worker processes
def test_bench_projects_the_row_on_the_cpu(fake_cifar_root: Path, tmp_path: Path):
    args = ["--device", "cpu", "--steps", "1", "--warmup", "0", "--eval-images", "20", "--workers", "0",
            "--parallel", "2", "--data-root", str(fake_cifar_root), "--out", str(tmp_path),
            "dataset.n_max=12", "dataset.imbalance_factor=10", "teacher.arch=resnet8", "student.arch=resnet8"]
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), *args], capture_output=True,
                          text=True, cwd=tmp_path, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    (report,) = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    row = report["row_projection"]
    assert list(row["student_min"]) == list(METHODS)  # every method of the table, a new one too
    assert len(row["concurrent_images_per_s"]) == 2 and all(r > 0 for r in row["concurrent_images_per_s"])
    assert row["sequential_min"] == pytest.approx(row["teacher_min"] + sum(row["student_min"].values()))
    assert row["parallel_min"] >= row["teacher_min"] + max(row["student_min"].values()) - 1e-9
    assert "students in parallel" in (tmp_path / f"{report['device']}.md").read_text()


def test_the_row_times_every_method_of_the_table_in_its_order():
    assert tuple(METHODS) == bench.ROW_LOSSES
