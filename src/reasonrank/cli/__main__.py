"""`python -m reasonrank.cli ...` runs the command line."""

import sys

from reasonrank.cli import main

sys.exit(main())
