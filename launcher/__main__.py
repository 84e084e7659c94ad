"""`python -m launcher [overrides]` launches; `status`, `logs`, `cancel`, `report` act on what was launched;
`sync` uploads its offline W&B runs. The `launcher` console script is main() below: the same in every way."""
import sys

STATUS_SUBCOMMANDS = ("status", "logs", "cancel", "report")
HELP_FLAGS = ("--help", "-h")  # Hydra's --hydra-help still reaches Hydra


def main() -> int:
    # Only what a command needs is imported: --help and completion answer without loading Hydra.
    from launcher.user_config import check_env_dirs

    check_env_dirs()
    args = sys.argv[1:]
    if args and args[0] == "sync":
        from launcher.wandb_sync import main as sync

        return sync(args[1:])
    elif args and args[0] in STATUS_SUBCOMMANDS:
        from launcher.status import main as subcommand

        return subcommand(args[0], args[1:])
    elif args and args[0] in ("--completion", "--complete"):
        from launcher.completion import main as completion

        return completion(args)
    elif any(arg in HELP_FLAGS for arg in args):
        from launcher.cli_help import print_help

        return print_help(args)
    else:
        from launcher.app import run  # Hydra's app, its exit codes mapped (launcher/exit_codes.py)

        return run() or 0


if __name__ == "__main__":
    sys.exit(main())
