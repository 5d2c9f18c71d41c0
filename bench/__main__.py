"""``python -m bench``: run the discovery benchmark (see ``bench/README.md``)."""

from __future__ import annotations

import sys

from bench.discovery import main

if __name__ == "__main__":
    sys.exit(main())
