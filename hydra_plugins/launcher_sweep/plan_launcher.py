"""Hydra launcher for `python -m launcher -m ...`: every sweep point goes into ONE plan, submitted once.

Hydra's basic launcher would run the whole app once per point; this one composes the points (cheaply,
see launcher.sweep), plans them together so that shared stages are submitted once, and returns at once.
"""

from typing import Optional, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

# Its config node, `hydra/launcher=plan`, is registered by launcher.schema.register_configs().


class PlanLauncher(Launcher):
    def __init__(self) -> None:
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from launcher.sweep import launch_sweep

        return launch_sweep(self.config, self.hydra_context.config_loader, job_overrides, initial_job_idx)
