"""``python -m samat`` (e.g. under torchrun) is the ``samat`` command."""

import sys

from samat.cli import main

sys.exit(main())
