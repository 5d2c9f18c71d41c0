"""``tractor.run_daemon`` as a program: a root serving compat_funcs until signalled.

Usage: python -m tests.rpc_targets.daemon_prog REGISTRY_ADDR
"""

from __future__ import annotations

import sys

import tractor_reg as tractor

if __name__ == "__main__":
    print("STARTING", flush=True)
    tractor.run_daemon(["tests.rpc_targets.compat_funcs"], registry_addrs=[sys.argv[1]])
