"""Hypothesis settings profiles for the property-based tests.

Import this module from a test file that uses hypothesis; it registers the profiles and
loads the one named by the ``HYPOTHESIS_PROFILE`` environment variable:

* ``ci`` (the default): few, derandomized examples so that the default ``pytest`` run
  stays fast and a red run is always reproducible (the same examples every time). No
  example database is written (the repository stays clean).
* ``thorough``: many more random examples (each test's budget times
  :data:`THOROUGH_FACTOR`), with an example database in the system temp directory so a
  failure found once is replayed first next time. Run it with::

      HYPOTHESIS_PROFILE=thorough python -m pytest tests/test_properties.py \\
          tests/backends/test_model.py -o timeout=1800

  (about 12 minutes; ``-o timeout`` lifts the 60 s per-test limit, which the bigger
  budgets exceed).

Tests size their budgets with :func:`budget` (``ci`` examples per test) rather than
hard-coding ``max_examples``, so one variable scales every property test.
"""

from __future__ import annotations

import os
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

#: How many times more examples the ``thorough`` profile runs than ``ci``.
THOROUGH_FACTOR = 20

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=50,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=50 * THOROUGH_FACTOR,
    database=DirectoryBasedExampleDatabase(
        os.path.join(tempfile.gettempdir(), "tractor_reg-hypothesis")
    ),
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in ("ci", "thorough"):
    raise ValueError(f"HYPOTHESIS_PROFILE must be 'ci' or 'thorough', got {PROFILE!r}")
settings.load_profile(PROFILE)


def budget(ci_examples: int) -> int:
    """``max_examples`` for a test that runs ``ci_examples`` examples under ``ci``."""
    return ci_examples * THOROUGH_FACTOR if PROFILE == "thorough" else ci_examples
