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
from omegaconf import DictConfig, OmegaConf

from ltkd.config import load_config
from ltkd.engine import PREEMPTED_EXIT_CODE, Preempted
from ltkd.errors import LTKDError

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")
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
        sys.exit(PREEMPTED_EXIT_CODE)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> None:
    main(cfg)


if __name__ == "__main__":
    hydra_main()
