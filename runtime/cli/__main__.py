"""``python -m edgerun.runtime.cli``: the same entry point as the ``edgerun`` console script."""
import sys

from . import main

if __name__ == "__main__":  # importing this module (the packaging test imports every module) runs nothing
    sys.exit(main())
