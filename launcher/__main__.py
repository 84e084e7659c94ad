"""`python -m launcher [overrides]` launches; `status`, `logs`, `cancel` inspect what was launched."""
import sys

SUBCOMMANDS = ("status", "logs", "cancel")

if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
    from launcher.status import main as subcommand

    sys.exit(subcommand(sys.argv[1], sys.argv[2:]))
else:
    from launcher.app import main

    main()
