"""`python -m launcher [overrides]` launches; `status`, `logs`, `cancel`, `report` act on what was launched;
`sync` uploads its offline W&B runs."""
import sys

STATUS_SUBCOMMANDS = ("status", "logs", "cancel", "report")

if len(sys.argv) > 1 and sys.argv[1] == "sync":
    from launcher.wandb_sync import main as sync

    sys.exit(sync(sys.argv[2:]))
elif len(sys.argv) > 1 and sys.argv[1] in STATUS_SUBCOMMANDS:
    from launcher.status import main as subcommand

    sys.exit(subcommand(sys.argv[1], sys.argv[2:]))
else:
    from launcher.app import main

    main()
