"""``python -m neunn`` runs the command line (also what ``torchrun -m neunn`` starts)."""

import sys

from neunn.cli import main

sys.exit(main())
