"""`python -m aigc` runs the CLI."""

import sys

from aigc.cli import main

sys.exit(main())
