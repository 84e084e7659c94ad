"""The Hydra application: `python -m launcher [overrides]`."""
from __future__ import annotations

import sys
import traceback

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from launcher import exit_codes
from launcher.preview import exit_invalid, make_console
from launcher.schema import CONF_DIR, register_configs
from launcher.validation import InvalidConfig

register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    from launcher.launch import dry_run, save_config, start_writing, validated_plan
    from launcher.scripts import ExperimentDir

    from launcher.errors import restore_environment

    restore_environment()  # composed: the launch's processes get the user's environment
    console = make_console()
    overrides = list(HydraConfig.get().overrides.task)
    try:
        plan = validated_plan(cfg, overrides)
    except InvalidConfig as invalid:
        exit_invalid(invalid, console)
    # Only now is anything written (Hydra writes nothing, conf/config.yaml): the config, redacted, first.
    preview = start_writing(plan, cfg, console)
    save_config(preview or ExperimentDir(plan.storage_root, plan.experiment).root, cfg, overrides)
    if cfg.launcher.dry_run:
        dry_run(plan, console, preview)
    else:
        from launcher.dispatch import submit

        submit(plan, console)


def run() -> None:
    """`python -m launcher [overrides]`, its exit codes those of launcher.exit_codes: Hydra reports its own
    compose errors (an unknown group option, a key not in the schema, bad override syntax) with 1, the code of
    any uncaught exception; before the launch writes or submits anything, such an error is the input's."""
    from hydra._internal.utils import get_args_parser

    from launcher.errors import hydra_raises, input_error_message
    from launcher.schema_check import override_errors

    # The command line's keys against the schema, before Hydra composes: Hydra adds an unknown `+key` silently
    # (and suggests `+` for a mistyped key), and fails with a traceback on `cluster.env_vars.HF_TOKEN=...`.
    overrides = get_args_parser().parse_known_args(sys.argv[1:])[0].overrides
    full_error = hydra_raises()  # Hydra raises its compose errors to here, said below in one paragraph each
    try:
        # In the try: an override that does not parse (`key=[1`) raises here, before Hydra would report it.
        errors = override_errors(overrides)
        if errors:
            exit_invalid(InvalidConfig(errors), make_console())
        main()
    except SystemExit as stop:
        if stop.code == 1 and not exit_codes.dispatch_started():
            sys.exit(exit_codes.CONFIG_ERROR)
        raise
    except Exception as error:
        if exit_codes.dispatch_started():
            raise
        message = input_error_message(error, overrides)
        if message is None or full_error:  # not the input's (a bug), or the user asked for tracebacks
            traceback.print_exc()
        if message is not None:
            print(f"error: {message}", file=sys.stderr)
        sys.exit(exit_codes.CONFIG_ERROR)
