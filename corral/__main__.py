"""`python -m corral ...` is the `corral` command (how `corral up` starts its daemons)."""
import sys

from corral.cli.main import main

sys.exit(main())
