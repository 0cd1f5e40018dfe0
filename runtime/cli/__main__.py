"""``python -m edgerun.runtime.cli``: the same entry point as the ``edgerun`` console script."""
import sys

from . import main

sys.exit(main())
