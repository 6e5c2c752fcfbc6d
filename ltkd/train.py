"""The entry point: `python -m ltkd.train [overrides]` (add `-m` for a Hydra multirun sweep).

Composes configs/train.yaml, validates it (one line and exit status 2 on a bad value), then runs the
teacher and student stages in the run directory Hydra chose.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ltkd.config import load_config
from ltkd.deadline import mark_launch
from ltkd.engine import PREEMPTED_EXIT_CODE, Preempted
from ltkd.errors import LTKDError

_PACKAGE = Path(__file__).resolve().parent
# the installed wheel's copy; in a checkout ltkd/configs links to the top-level configs/ (used directly where a
# copy of the checkout lost the link)
CONFIG_DIR = str(_PACKAGE / "configs" if (_PACKAGE / "configs").is_dir() else _PACKAGE.parent / "configs")
USER_ERROR_EXIT_CODE = 2


def run_dir_name(dataset: str, imbalance: Any, teacher: str, student: str, loss: str, seed: Any,
                 overrides: str) -> str:
    """`<dataset>-g<γ>/<teacher>-<student>/<loss>/seed<seed>[,<other overrides>]`: stable per config."""
    name = f"{dataset}-g{float(imbalance):g}/{teacher}-{student}/{loss}/seed{seed}"
    if overrides:
        name += "," + overrides.replace("/", "_")
    return name


OmegaConf.register_new_resolver("run_dir", run_dir_name, replace=True)


def main(cfg: DictConfig) -> dict[str, Any] | None:
    """Validate and run one job; user errors become one line on stderr and exit status 2."""
    from ltkd import pipeline

    debug = bool(cfg.get("debug", False))
    try:
        run_cfg = load_config(cfg)
        hydra_cfg = HydraConfig.get()
        command = " ".join(["python -m ltkd.train", *hydra_cfg.overrides.task])
        return pipeline.run(run_cfg, Path(hydra_cfg.runtime.output_dir), command)
    except LTKDError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
    except Preempted as exc:
        print(str(exc), file=sys.stderr)
        if in_parallel_worker():  # the other jobs stop and save too; UnfinishedJobsExit sets the exit status
            return None
        sys.exit(PREEMPTED_EXIT_CODE)  # a single run, a sequential sweep, a Slurm job (requeued)


def in_parallel_worker() -> bool:
    """Whether this job runs in a worker process of Hydra's joblib launcher (a sweep's jobs at once), where
    exiting would make joblib kill the other jobs before they save."""
    return "JoblibLauncher" in str(HydraConfig.get().launcher.get("_target_", ""))


class UnfinishedJobsExit(Callback):
    """After a multirun, exit with PREEMPTED_EXIT_CODE when some of its jobs stopped before finishing (a
    parallel sweep's jobs each checkpoint and return on a time limit or signal), naming them."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        unfinished = sorted(str(p.parent.relative_to(sweep_dir)) for p in sweep_dir.rglob("config.yaml")
                            if not (p.parent / "metrics.json").exists())
        if unfinished:
            print(f"{len(unfinished)} job(s) of {sweep_dir} unfinished ({', '.join(unfinished)}); re-run the same "
                  "command to resume", file=sys.stderr)
            sys.exit(PREEMPTED_EXIT_CODE)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> None:
    main(cfg)


if __name__ == "__main__":
    mark_launch()
    hydra_main()
