"""``python -m bench [discovery|storage|all] [options]`` (see ``bench/README.md``).

* ``python -m bench discovery ...`` — the discovery benchmark (issue 2), its own options.
* ``python -m bench storage ...`` — the storage benchmark (issue 3), its own options.
* ``python -m bench [all] [--quick] [--reps R] [--no-procs] [--json PATH]`` — both, one
  after the other; ``--json`` then writes ``{"discovery": ..., "storage": ...}``.

The exit status is the worst of the benchmarks run: 0 whatever the ratios (PASS/FAIL is
printed), 1 if a benchmark could not run, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench import discovery, storage


def run_all(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run every tractor_reg benchmark (discovery, then storage). "
        "`python -m bench discovery -h` / `python -m bench storage -h` for their own options.",
    )
    parser.add_argument("--quick", action="store_true", help="short runs")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (median reported)")
    parser.add_argument(
        "--no-procs", action="store_true", help="discovery: skip the client processes figure"
    )
    parser.add_argument("--json", metavar="PATH", default=None, help="also write results as JSON")
    args = parser.parse_args(argv)

    common = ["--quick"] if args.quick else []
    if args.reps is not None:
        common += ["--reps", str(args.reps)]
    combined: dict[str, Any] = {}
    disc_argv = [*common, *(["--no-procs"] if args.no_procs else [])]
    if args.json:
        # The discovery run writes its own results there; they are read back and the
        # file is then rewritten with both benchmarks' results.
        Path(args.json).unlink(missing_ok=True)
        disc_argv += ["--json", args.json]
    status = discovery.main(disc_argv)
    if status == 130:
        return status
    if args.json and Path(args.json).exists():
        combined["discovery"] = json.loads(Path(args.json).read_text())
    print("", flush=True)
    storage_args = argparse.Namespace(
        quick=args.quick, reps=args.reps, n=None, storm=1000, lat_n=None, aio_n=None
    )
    st_status, result = storage.run_storage(storage_args)
    if result is not None:
        combined["storage"] = result
    if args.json:
        Path(args.json).write_text(json.dumps(combined, indent=2) + "\n")
        print(f"results written to {args.json}")
    return st_status if st_status == 130 else max(status, st_status)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "discovery":
        return discovery.main(args[1:])
    if args and args[0] == "storage":
        return storage.main(args[1:])
    if args and args[0] == "all":
        args = args[1:]
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
