"""`python -m reasonrank.cli ...` runs the command line."""

import sys

from reasonrank.cli.main import main

sys.exit(main())
