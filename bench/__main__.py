"""``python -m bench [all|suite|discovery|storage] [options]`` (see ``docs/performance.md``).

* ``python -m bench [all] [--quick] [--reps R] [--json PATH] [--png PATH] ...`` — the
  whole suite (:mod:`bench.suite`): every scenario for ``memory://``, ``sqlite://`` and
  ``redis://``, the peers and the raw limits, one table, every target of issues 2, 3, 4
  and 6 as PASS/FAIL; writes ``bench/results/latest.json`` and ``latest.png`` unless told
  otherwise. ``suite`` is another name for ``all``.
* ``python -m bench discovery ...`` — the discovery benchmark alone (issue 2), its own
  options.
* ``python -m bench storage ...`` — the storage benchmark alone (issue 3), its own options.

The exit status is 0 whatever the ratios (PASS/FAIL is printed), 1 if a benchmark could
not run, 130 on Ctrl-C.
"""

from __future__ import annotations

import sys

from bench import discovery, storage, suite


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "discovery":
        return discovery.main(args[1:])
    if args and args[0] == "storage":
        return storage.main(args[1:])
    if args and args[0] in ("all", "suite"):
        args = args[1:]
    return suite.main(args)


if __name__ == "__main__":
    sys.exit(main())
