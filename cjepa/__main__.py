"""``python -m cjepa COMMAND ...`` is ``cjepa COMMAND ...`` (what ``torchrun -m cjepa train ...`` runs on each rank)."""

import sys

from cjepa.cli import main

sys.exit(main())
