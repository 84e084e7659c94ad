"""Hydra's basic sweeper, without its up-front composition of every point.

BasicSweeper composes each point once to validate the batch, then the launcher composes it again; with
hundreds of points that doubles the slowest part of a sweep. The plan launcher composes every point itself
(type-checked) and validates the whole sweep before anything is written or submitted.
"""
from typing import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

# Its config node, `hydra/sweeper=plan`, is registered by launcher.schema.register_configs().


class PlanSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Left to the plan launcher, which composes and validates every point once."""
