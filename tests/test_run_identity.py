"""A run directory belongs to one config: "run complete" and resume refuse another config's directory; a
finished run's outputs are all present and whole, and are made again when they are not."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ltkd import pipeline, reporting, run_outputs
from ltkd.config import load_config
from ltkd.errors import ConfigError, OutputError
from tests.helpers import run_cli, toy_overrides

CHANGES = {  # first run's overrides, second run's overrides, a field that differs
    "preset": (["experiment=demo"], [], "loss.warmup_epochs (stored 1, now 0)"),
    "pair": (["pair=resnet32_resnet8"], ["pair=resnet56_resnet20"], "pair.name (stored resnet32_resnet8, now "
                                                                     "resnet56_resnet20)"),
    "override": (["trainer.eval_every=2"], [], "trainer.eval_every (stored 2, now 1)"),
}


# one case in the fast suite, the others (same code path, other fields) in `make test-all`
@pytest.mark.parametrize("change", [pytest.param(c, marks=[] if c == "override" else pytest.mark.slow)
                                    for c in CHANGES])
def test_another_configs_run_directory_is_refused_when_complete_and_on_resume(change: str, compose_toy,
                                                                              tmp_path: Path):
    first, second, differing = CHANGES[change]
    run_dir = tmp_path / "run"
    pipeline.run(load_config(compose_toy("loss=kd", *first)), run_dir)
    other = load_config(compose_toy("loss=kd", *second))
    with pytest.raises(ConfigError, match="holds a run of another config") as complete:
        pipeline.run(other, run_dir)
    (run_dir / "metrics.json").unlink()  # unfinished: the student's checkpoint is there to resume from
    with pytest.raises(ConfigError, match="holds a run of another config") as resumed:
        pipeline.run(other, run_dir)
    for info in (complete, resumed):
        assert differing in str(info.value) and "\n" not in str(info.value)
    # where files go, how progress is logged and the speed knobs are not part of a run's identity
    same = compose_toy("loss=kd", *first, "debug=true", "trainer.device=cpu", "trainer.checkpoint_every=2",
                       "trainer.eval_batch_size=7", "trainer.num_workers=0", "trainer.time_limit=1h",
                       f"paths.output_root={tmp_path}")
    assert pipeline.run(load_config(same), run_dir)["config"]["debug"] is True


def test_a_run_stored_with_every_loss_s_keys_still_resumes_and_reports_complete(compose_toy, tmp_path: Path):
    """Runs made before each loss had its own keys stored all of them (KD with `loss.rebalance: none`, ...):
    keys the run's loss does not have are ignored; a key it has still counts. So is `pair.dkd_beta`, DKD's β
    before it moved to the loss side (configs/loss_pair/)."""
    run_dir = tmp_path / "run"
    cfg = load_config(compose_toy("loss=kd"))
    pipeline.run(cfg, run_dir)
    stored = OmegaConf.load(run_dir / "config.yaml")
    stored.loss.rebalance, stored.loss.beta, stored.loss.preact = "none", 0.0, False
    stored.pair.dkd_beta = 8.0
    OmegaConf.save(stored, run_dir / "config.yaml")
    assert pipeline.run(cfg, run_dir)["loss"] == "kd"  # run complete
    stored.loss.alpha = 0.5
    OmegaConf.save(stored, run_dir / "config.yaml")
    with pytest.raises(ConfigError, match=r"loss\.alpha \(stored 0\.5, now 0\.9\)"):
        pipeline.run(cfg, run_dir)


def test_the_issues_two_commands_get_two_directories_and_a_shared_one_is_refused(fake_cifar_root: Path,
                                                                                   tmp_path: Path):
    common = toy_overrides(fake_cifar_root, tmp_path / "cache", "loss=kd")
    demo = run_cli(*common, "experiment=demo", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr[-2000:]
    (demo_dir,) = (tmp_path / "outputs").glob("*/*/kd/*experiment=demo*")
    plain = run_cli(*common, "pair=resnet32_resnet8", cwd=tmp_path)
    assert plain.returncode == 0 and "run complete" not in plain.stdout  # its own directory, trained
    shared = run_cli(*common, "pair=resnet32_resnet8", f"hydra.run.dir='{demo_dir}'", cwd=tmp_path)
    lines = [line for line in shared.stderr.splitlines() if line.strip()]
    assert shared.returncode == 2 and len(lines) == 1, shared.stderr[-2000:]
    assert "holds a run of another config: loss.warmup_epochs (stored 1, now 0)" in lines[0]


def test_a_failed_plot_is_made_again_by_the_next_run(compose_toy, tmp_path: Path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    cfg = load_config(compose_toy("loss=kd"))

    def full_disk(path: Path, data: bytes) -> None:
        path.write_bytes(b"")  # what a failed savefig used to leave
        raise OutputError(f"cannot write '{path}': No space left on device")

    monkeypatch.setattr(reporting, "atomic_write_bytes", full_disk)
    with pytest.raises(OutputError, match="No space left on device"):
        pipeline.run(cfg, run_dir)
    monkeypatch.undo()
    first = pipeline.run(cfg, run_dir)
    assert "run complete" not in capsys.readouterr().out
    assert run_outputs.outputs_problem(run_dir) is None
    assert (run_dir / "per_class_accuracy.png").read_bytes().startswith(b"\x89PNG")
    assert first["student"]["final"] == json.loads((run_dir / "metrics.json").read_text())["student"]["final"]


@pytest.mark.parametrize(("damage", "problem"), [
    ("per_class_accuracy.png", "per_class_accuracy.png is not a whole PNG"),
    ("metrics.json", "metrics.json is unreadable"),
    ("student.pt", "student.pt' is truncated"),
])
def test_a_damaged_output_of_a_finished_run_is_repaired_with_the_same_results(damage: str, problem: str,
                                                                             compose_toy, tmp_path: Path, capsys):
    run_dir = tmp_path / "run"
    cfg = load_config(compose_toy("loss=kd"))
    before = pipeline.run(cfg, run_dir)
    path = run_dir / damage
    path.write_bytes(path.read_bytes()[:40])
    capsys.readouterr()
    after = pipeline.run(cfg, run_dir)
    assert problem in capsys.readouterr().out
    assert run_outputs.outputs_problem(run_dir) is None
    for who in ("teacher", "student"):
        assert after[who]["final"] == before[who]["final"]


def pasted_run_dir(message: str) -> str:
    """The value of the `hydra.run.dir=` override that `message` tells the user to add after resume=false, as
    the shell and then Hydra's override parser read it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    (override,) = [a for a in shlex.split(message.split("resume=false ", 1)[1]) if a.startswith("hydra.run.dir=")]
    (parsed,) = OverridesParser.create().parse_overrides([override])
    assert parsed.key_or_group == "hydra.run.dir"
    return OmegaConf.create({"dir": parsed.value()}).dir


@pytest.mark.parametrize("name", ["seed0,loss.alpha=0.5", "it's a \"dir\" with $HOME and ${x}", "back\\slash\\"])
def test_the_run_directory_a_message_shows_pastes_into_a_command(name: str, compose_toy, tmp_path: Path):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    run_dir = tmp_path / "outputs" / "kd" / name
    run_dir.mkdir(parents=True)
    if "=" in name:  # what the message said before: Hydra cannot parse the directory unquoted
        with pytest.raises(OverrideParseException):
            OverridesParser.create().parse_overrides([f"hydra.run.dir={run_dir}"])
    stored = load_config(compose_toy("loss=kd", "trainer.eval_every=2")).to_dict()
    OmegaConf.save(OmegaConf.create(stored), run_dir / "config.yaml")
    with pytest.raises(ConfigError, match="holds a run of another config") as other:
        pipeline.check_same_identity(load_config(compose_toy("loss=kd")), run_dir)
    (run_dir / "config.yaml").write_text("a: [unclosed")
    with pytest.raises(ConfigError, match="is unreadable") as unreadable:
        pipeline.check_same_identity(load_config(compose_toy("loss=kd")), run_dir)
    for info in (other, unreadable):
        assert pasted_run_dir(str(info.value)) == str(run_dir)
