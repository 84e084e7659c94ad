"""Dispatch: how a plan reaches Slurm (through submitit) or this machine; the plan itself knows neither."""

__all__ = ["submit"]


def __getattr__(name: str):
    # `status` imports launcher.dispatch.slurm/local: submitting (core, its rich tables and checks) loads on use.
    if name == "submit":
        from launcher.dispatch.core import submit

        return submit
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
