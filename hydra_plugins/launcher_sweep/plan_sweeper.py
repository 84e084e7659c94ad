"""Hydra's basic sweeper, without its up-front composition of every point.

BasicSweeper composes each point once to validate the batch, then the launcher composes it again; with
hundreds of points that doubles the slowest part of a sweep. The plan launcher composes every point itself
(type-checked) and validates the whole sweep before anything is written or submitted.
"""
from typing import Any, List, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

# Its config node, `hydra/sweeper=plan`, is registered by launcher.schema.register_configs().


class PlanSweeper(BasicSweeper):
    def sweep(self, arguments: List[str]) -> Any:
        """BasicSweeper.sweep without its first step: making the sweep directory and saving the whole config
        (the command line's secrets included) in it as multirun.yaml, before anything was validated. The plan
        launcher writes the sweep directory, redacted, once the sweep is valid."""
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        self.overrides = self.split_arguments(parser.parse_overrides([*self._parse_config(), *arguments]),
                                              self.max_batch_size)
        returns, initial_job_idx = [], 0
        while not self.is_done():
            batch = self.get_job_batch()
            results = self.launcher.launch(batch, initial_job_idx=initial_job_idx)
            for result in results:
                _ = result.return_value  # raises if the job failed, as BasicSweeper does
            initial_job_idx += len(batch)
            returns.append(results)
        return returns

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Left to the plan launcher, which composes and validates every point once."""
