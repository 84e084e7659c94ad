"""The Hydra application: `python -m launcher [overrides]`."""
from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from launcher.preview import exit_invalid, make_console
from launcher.schema import CONF_DIR, register_configs
from launcher.validation import InvalidConfig

register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    from launcher.launch import dry_run, validated_plan

    console = make_console()
    try:
        plan = validated_plan(cfg, list(HydraConfig.get().overrides.task))
    except InvalidConfig as invalid:
        exit_invalid(invalid, console)
    if cfg.launcher.dry_run:
        dry_run(plan, console)
    else:
        from launcher.dispatch import submit

        submit(plan, console)
