"""make_table: aggregation over seeds, teacher de-duplication, paper columns, scale guard, outputs."""

import json
from pathlib import Path

import pytest

from ltkd.results import collect, find_metrics, is_reduced, load_published, to_rows, write_table

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "make_table.py"


def _acc(overall: float, tail: float) -> dict:
    return {"overall": overall, "head": overall + 10, "medium": overall, "tail": tail, "per_class": []}


def write_run(root: Path, loss: str, seed: int, overall: float, tail: float, *, gamma: float = 100,
              epochs: int = 240, steps=None, config: dict | None = None, dataset: str = "cifar100_lt") -> None:
    run = root / f"{loss}-s{seed}-g{gamma}-{len(list(root.glob('*'))) if root.exists() else 0}"
    run.mkdir(parents=True)
    metrics = {
        "dataset": dataset, "imbalance_factor": gamma, "teacher_arch": "resnet32x4",
        "student_arch": "resnet8x4", "loss": loss, "seed": seed, "epochs": epochs, "max_steps_per_epoch": steps,
        "teacher": {"final": _acc(60.0 + seed, 15.0), "best": _acc(61.0, 16.0), "source": f"cache/t{seed}.pt"},
        "student": {"final": _acc(overall, tail), "best": _acc(overall + 1, tail), "wall_time_s": 120.0},
        "config": config or {"seed": seed, "loss": {"name": loss, "alpha": 1.0}},
    }
    (run / "metrics.json").write_text(json.dumps(metrics))


def test_seeds_are_averaged_and_teacher_counted_once_per_seed(tmp_path: Path):
    write_run(tmp_path, "kd", 0, 40.0, 12.0)
    write_run(tmp_path, "kd", 1, 42.0, 14.0)
    write_run(tmp_path, "ltkd", 0, 50.0, 26.0)
    cells = {c.method: c for c in collect(find_metrics(tmp_path))}
    assert [c for c in cells] == ["teacher", "kd", "ltkd"]
    assert cells["kd"].mean("overall") == pytest.approx(41.0)
    assert cells["kd"].std("overall") == pytest.approx(2**0.5)
    assert cells["teacher"].values["overall"] == [60.0, 61.0]  # seed 0 seen twice, counted once
    rows = {r["method"]: r for r in to_rows(list(cells.values()), load_published())}
    assert rows["kd"]["overall"] == "41.00 ± 1.41"
    assert rows["kd"]["paper_overall"] == "42.48"
    assert rows["kd"]["diff_overall"] == "-1.48"
    assert rows["ltkd"]["diff_tail"] == f"{26.0 - 27.21:+.2f}"
    assert rows["teacher"]["paper_tail"] == "15.28" and rows["teacher"]["paper_overall"] == ""


def test_runs_that_differ_in_settings_get_their_own_rows(tmp_path: Path):
    for seed in (0, 1):
        for alpha in (1.0, 2.0):
            write_run(tmp_path, "ltkd", seed, 40.0 + alpha + seed, 20.0,
                      config={"seed": seed, "paths": {"output_root": f"o{seed}"}, "loss": {"alpha": alpha, "beta": 8}})
    rows = {r["method"]: r for r in to_rows(collect(find_metrics(tmp_path)), load_published())}
    assert set(rows) == {"teacher", "ltkd (alpha=1.0)", "ltkd (alpha=2.0)"}  # seed and paths do not split rows
    assert rows["ltkd (alpha=2.0)"]["seeds"] == "2" and rows["ltkd (alpha=2.0)"]["overall"].startswith("42.50")
    assert rows["ltkd (alpha=1.0)"]["paper_overall"] == ""  # a variant is not the paper's setting


def test_best_epoch_column_can_be_chosen(tmp_path: Path):
    write_run(tmp_path, "kd", 0, 40.0, 12.0)
    (kd,) = [c for c in collect(find_metrics(tmp_path), which="best") if c.method == "kd"]
    assert kd.mean("overall") == 41.0


def test_script_writes_md_csv_png_and_flags_reduced_scale(tmp_path: Path):
    import subprocess
    import sys

    runs = tmp_path / "runs"
    for gamma in (100, 10):
        for loss in ("kd", "ltkd"):
            write_run(runs, loss, 0, 45.0, 20.0, gamma=gamma, epochs=2, steps=3)
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(runs), "--name", "t", "--out", str(out)],
                          capture_output=True, text=True, check=True)
    md = (out / "t.md").read_text()
    assert "REDUCED SCALE" in md
    assert md.count("| resnet8x4 | ltkd |") == 2 and md.count("| resnet8x4 | teacher |") == 2
    assert (out / "t.csv").read_text().startswith("dataset,imbalance_factor")
    assert (out / "t.png").stat().st_size > 1000
    assert "wrote" in proc.stdout


def test_a_reading_below_the_table_is_kept_when_the_table_is_made_again(tmp_path: Path):
    runs, out = tmp_path / "runs", tmp_path / "results"
    write_run(runs, "kd", 0, 40.0, 10.0)
    write_table(to_rows(collect(find_metrics(runs)), {}), out / "t", "# t")
    reading = "## Reading\n\nLTKD is ahead (a person's words).\n"
    (out / "t.md").write_text((out / "t.md").read_text() + "\n" + reading)
    write_run(runs, "ltkd", 0, 50.0, 25.0)
    write_table(to_rows(collect(find_metrics(runs)), {}), out / "t", "# t")
    md = (out / "t.md").read_text()
    assert md.count("| ltkd |") == 1 and md.endswith(reading) and md.count("## Reading") == 1

def test_mixed_scales_are_refused(tmp_path: Path):
    import subprocess
    import sys

    write_run(tmp_path, "kd", 0, 40.0, 12.0, epochs=240)
    write_run(tmp_path, "kd", 1, 40.0, 12.0, epochs=2, steps=3)
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "different scale" in proc.stderr


@pytest.mark.parametrize(("dataset", "epochs", "steps", "reduced"), [
    ("cifar100_lt", 240, None, False), ("cifar100_lt", 239, None, True), ("cifar100_lt", 240, 3, True),
    ("tinyimagenet_lt", 240, None, False), ("imagenet_lt", 100, None, False), ("imagenet_lt", 99, None, True),
])
def test_reduced_means_short_of_the_datasets_recipe(dataset: str, epochs: int, steps, reduced: bool, tmp_path: Path):
    write_run(tmp_path, "kd", 0, 40.0, 12.0, epochs=epochs, steps=steps, dataset=dataset)
    assert is_reduced(collect(find_metrics(tmp_path))) is reduced


def test_loss_keys_stored_only_by_runs_made_before_per_method_configs_do_not_split_a_cell(tmp_path: Path):
    old = {"seed": 0, "loss": {"name": "kd", "alpha": 0.9, "beta": 0.0, "rebalance": "none"}}  # every loss's keys
    write_run(tmp_path, "kd", 0, 40.0, 12.0, config=old)
    write_run(tmp_path, "kd", 1, 42.0, 14.0, config={"seed": 1, "loss": {"name": "kd", "alpha": 0.9}})
    write_run(tmp_path, "kd", 2, 44.0, 14.0, config={"seed": 2, "loss": {"name": "kd", "alpha": 0.5}})
    kd = [c for c in collect(find_metrics(tmp_path)) if c.method == "kd"]
    assert sorted((c.variant, c.seeds) for c in kd) == [("alpha=0.5", [2]), ("alpha=0.9", [0, 1])]


def _make_table():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TABLE_FILES = (".md", ".csv", ".png")


def test_an_archived_table_is_made_again_from_its_archive_byte_for_byte(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = Path("multirun")
    for seed in (0, 1):
        for loss in ("kd", "ltkd"):
            write_run(runs, loss, seed, 40.0 + seed, 10.0 + seed)
    for run in runs.iterdir():
        (run / "config.yaml").write_text(f"seed: {run.name}\n")
        (run / "student.pt").write_bytes(b"weights")
    make_table = _make_table()
    assert make_table.main([str(runs), "--name", "t", "--archive"]) == 0
    archived = Path("results/runs/t")
    assert sorted(p.relative_to(archived).as_posix() for p in archived.rglob("*") if p.is_file()) == sorted(
        f"{run.name}/{name}" for run in runs.iterdir() for name in ("config.yaml", "metrics.json"))
    assert f"From 4 runs under `{archived}`" in Path("results/t.md").read_text()
    first = {ext: Path("results/t").with_suffix(ext).read_bytes() for ext in TABLE_FILES}
    for ext in TABLE_FILES:
        Path("results/t").with_suffix(ext).unlink()
    assert make_table.main([str(archived), "--name", "t"]) == 0  # what `make table` runs for each archive
    assert {ext: Path("results/t").with_suffix(ext).read_bytes() for ext in TABLE_FILES} == first


def test_an_archive_made_again_drops_the_runs_of_the_last_one(tmp_path: Path):
    write_run(tmp_path / "a", "kd", 0, 40.0, 10.0)
    write_run(tmp_path / "b", "ltkd", 0, 50.0, 20.0)
    make_table, out = _make_table(), tmp_path / "results"
    assert make_table.main([str(tmp_path / "a"), "--name", "t", "--out", str(out), "--archive"]) == 0
    assert make_table.main([str(tmp_path / "b"), "--name", "t", "--out", str(out), "--archive"]) == 0
    assert [json.loads(p.read_text())["loss"] for p in find_metrics(out / "runs" / "t")] == ["ltkd"]



def test_several_folders_make_one_table_and_one_archive_that_makes_it_again(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_run(Path("sweep_a"), "kd", 0, 40.0, 10.0, gamma=10)
    write_run(Path("old/seed0"), "kd", 0, 30.0, 5.0)
    write_run(Path("old/seed0"), "ltkd", 0, 35.0, 8.0)
    make_table = _make_table()
    monkeypatch.setattr(make_table, "plot_table", lambda *args: None)  # the figure is not what is tested (slow)
    assert make_table.main(["sweep_a", "old/seed0", "--name", "t", "--archive"]) == 0
    archived = Path("results/runs/t")
    assert sorted(p.parent.parent.name for p in find_metrics(archived)) == ["seed0", "seed0", "sweep_a"]
    md = Path("results/t.md").read_text()
    assert "From 3 runs under `results/runs/t`" in md
    assert "| 10 | resnet32x4 | resnet8x4 | kd | 1 |" in md and "| 100 | resnet32x4 | resnet8x4 | ltkd | 1 |" in md
    first = Path("results/t.md").read_bytes()
    assert make_table.main([str(archived), "--name", "t"]) == 0  # `make table`
    assert Path("results/t.md").read_bytes() == first
    assert make_table.main(["sweep_a", "old/seed0", "--name", "u"]) == 0  # without --archive: both named
    assert "From 3 runs under `sweep_a old/seed0`" in Path("results/u.md").read_text()


@pytest.mark.parametrize(("argv", "says"), [
    (["a", "b"], "several runs_dir need --name"),
    (["a", "a/x", "--name", "t"], "one folder is given twice or lies inside another"),
    (["a", "a", "--name", "t"], "one folder is given twice or lies inside another"),
    (["a/x", "b/x", "--name", "t", "--archive"], "two share one"),
    (["a", "results/runs/t/b", "--name", "t", "--archive"], "which holds a runs_dir"),
    (["results/runs/t/b", "--name", "t", "--archive"], "--archive replaces results/runs/t, which"),
])
def test_folders_that_cannot_be_tabulated_together_are_one_line_and_status_2(argv, says, tmp_path: Path, capsys,
                                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    for folder in ("a/x", "b/x", "results/runs/t/b"):
        write_run(Path(folder), "kd", 0, 40.0, 10.0)
    assert _make_table().main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and says in err
    assert find_metrics(Path("results/runs/t/b")), "nothing is removed"


REPO = Path(__file__).resolve().parent.parent
COMMITTED = sorted(p.name for p in (REPO / "results" / "runs").glob("*/"))


@pytest.mark.parametrize("name", COMMITTED)
def test_every_committed_table_is_made_again_from_its_runs_byte_for_byte(name: str, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "results"
    out.mkdir()
    (out / f"{name}.md").write_text((REPO / "results" / f"{name}.md").read_text())  # its reading is kept
    assert _make_table().main([f"results/runs/{name}", "--name", name, "--out", str(out)]) == 0
    for made in sorted(p for p in out.iterdir() if p.suffix in (".md", ".csv")):
        assert made.read_bytes() == (REPO / "results" / made.name).read_bytes(), made.name


def test_two_teachers_of_one_setting_are_two_rows_not_two_seeds(tmp_path: Path):
    for objective in ("ce", "logit_adjusted"):
        write_run(tmp_path, "kd", 0, 40.0, 10.0, config={"seed": 0, "teacher": {"objective": objective}})
    teachers = [c for c in collect(find_metrics(tmp_path)) if c.method == "teacher"]
    assert [(c.label, c.seeds) for c in teachers] == [("teacher (objective=ce)", [0]),
                                                      ("teacher (objective=logit_adjusted)", [0])]


def write_bad_runs(root: Path) -> dict[Path, str]:
    """A truncated metrics.json, an empty one and a run folder without one (half-written), under `root`;
    returns each bad path and the reason make_table gives for it."""
    truncated, empty, half = root / "truncated", root / "empty", root / "half-written"
    for folder in (truncated, empty, half):
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text("seed: 0\n")
    write_run(root, "ltkd", 0, 50.0, 20.0)
    good = next(p for p in find_metrics(root))
    (truncated / "metrics.json").write_text(good.read_text()[:40])
    (empty / "metrics.json").write_text("")
    return {truncated / "metrics.json": "not valid JSON, truncated?", empty / "metrics.json": "empty file",
            half: "no metrics.json"}


def test_unreadable_and_half_written_runs_are_named_and_the_rest_is_tabulated(tmp_path: Path, capsys, monkeypatch):
    runs, out = tmp_path / "runs", tmp_path / "results"
    bad = write_bad_runs(runs)
    write_run(runs, "kd", 0, 40.0, 10.0)
    make_table = _make_table()
    monkeypatch.setattr(make_table, "plot_table", lambda *args: None)  # the figure is not what is tested (slow)
    assert make_table.main([str(runs), "--name", "t", "--out", str(out)]) == 0  # a traceback before
    stderr = capsys.readouterr().err.splitlines()
    assert [line.split(": ")[0] for line in stderr] == [f"skipped {path}" for path in sorted(bad)]
    assert all(reason in line for line, (_, reason) in zip(stderr, sorted(bad.items()), strict=True))
    md = (out / "t.md").read_text()
    assert "From 2 runs under" in md and md.count("| resnet8x4 | kd |") == md.count("| resnet8x4 | ltkd |") == 1
    note = md[md.index("Skipped (not in the table):"):].splitlines()[1:]
    assert [line.split("`")[1] for line in note] == [str(path) for path in sorted(bad)]


def test_no_readable_run_is_one_line_and_status_2(tmp_path: Path, capsys):
    bad = write_bad_runs(tmp_path)
    next(p for p in find_metrics(tmp_path) if p.parent.name.startswith("ltkd")).write_text("[1, 2]")
    assert _make_table().main([str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: no readable run under {tmp_path}; ") and "a JSON list, not an object" in line
    assert all(str(path) in line for path in bad)
    assert not (tmp_path / "o").exists()


def test_skipped_runs_are_archived_so_the_table_made_again_names_them_too(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bad = write_bad_runs(Path("multirun"))
    make_table = _make_table()
    monkeypatch.setattr(make_table, "plot_table", lambda *args: None)  # the figure is not what is tested (slow)
    assert make_table.main(["multirun", "--name", "t", "--archive"]) == 0
    archived = Path("results/runs/t")
    assert [line.split(": ")[0] for line in capsys.readouterr().err.splitlines()] == \
        [f"skipped {archived / path.relative_to('multirun')}" for path in sorted(bad)]
    first = {ext: Path("results/t").with_suffix(ext).read_bytes() for ext in (".md", ".csv")}
    assert b"Skipped (not in the table):" in first[".md"]
    assert make_table.main([str(archived), "--name", "t"]) == 0  # `make table`
    assert {ext: Path("results/t").with_suffix(ext).read_bytes() for ext in (".md", ".csv")} == first


def test_a_teacher_shared_by_two_students_is_listed_with_each(tmp_path: Path):
    write_run(tmp_path, "kd", 0, 40.0, 12.0)
    write_run(tmp_path, "kd", 0, 45.0, 14.0)
    other = sorted(find_metrics(tmp_path))[1]
    other.write_text(json.dumps(json.loads(other.read_text()) | {"student_arch": "shufflenetv2"}))
    teachers = [(c.student, c.values["overall"]) for c in collect(find_metrics(tmp_path)) if c.method == "teacher"]
    assert teachers == [("resnet8x4", [60.0]), ("shufflenetv2", [60.0])]


def test_runs_stored_before_a_key_was_added_or_removed_share_a_row_with_newer_ones(tmp_path: Path):
    """The table tells runs apart as the resume check does (run_identity): seed 0 stored before
    trainer.optimizer existed and with pair.dkd_beta, seed 1 after; both are one row of two seeds. A key at a
    value other than its default still splits, labelled with the default for the older run."""
    old = {"pair": {"dkd_beta": 8.0}, "trainer": {"lr": 0.05}, "loss": {"name": "kd"}}
    new = {"pair": {}, "trainer": {"lr": 0.05, "optimizer": "sgd", "warmup_epochs": 0}, "loss": {"name": "kd"}}
    write_run(tmp_path, "kd", 0, 40.0, 12.0, config=old | {"seed": 0})
    write_run(tmp_path, "kd", 1, 42.0, 14.0, config=new | {"seed": 1})
    rows = {(c.method, c.variant): c.seeds for c in collect(find_metrics(tmp_path))}
    assert rows == {("teacher", ""): [0, 1], ("kd", ""): [0, 1]}
    adamw = new | {"seed": 2, "trainer": new["trainer"] | {"optimizer": "adamw"}}
    write_run(tmp_path, "kd", 2, 30.0, 4.0, config=adamw)
    kd = {c.variant: c.seeds for c in collect(find_metrics(tmp_path)) if c.method == "kd"}
    assert kd == {"optimizer=sgd": [0, 1], "optimizer=adamw": [2]}


def test_one_seed_found_twice_is_refused_not_averaged_as_two(tmp_path: Path, capsys):
    """The same run in two folders (or two runs differing only in a speed knob) is not "2 seeds"."""
    write_run(tmp_path / "a", "kd", 0, 40.0, 12.0)
    write_run(tmp_path / "b", "kd", 0, 41.0, 12.0, config={"seed": 0, "loss": {"name": "kd", "alpha": 1.0},
                                                          "trainer": {"num_workers": 8}})
    assert _make_table().main([str(tmp_path / "a"), str(tmp_path / "b"), "--name", "t",
                               "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "kd on" in err and "seed 0 would be counted twice" in err
    assert str(tmp_path / "a") in err and str(tmp_path / "b") in err
