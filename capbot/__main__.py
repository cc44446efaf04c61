"""`python -m capbot` runs the CLI."""

import sys

from capbot.cli import main

sys.exit(main())
