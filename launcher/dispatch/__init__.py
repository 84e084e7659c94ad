"""Dispatch: how a plan reaches Slurm (through submitit) or this machine; the plan itself knows neither."""
from launcher.dispatch.core import submit

__all__ = ["submit"]
