"""``python -m actors.cli``: the ``transport-actors`` command."""

import sys

from . import main

sys.exit(main())
