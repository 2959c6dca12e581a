"""``python -m benchmarks``: see :mod:`benchmarks.runner` and ``benchmarks/README.md``."""

import sys

from .runner import main

sys.exit(main())
