"""Hold a SQLite file's write lock: ``BEGIN IMMEDIATE`` and print ``LOCKED``.

The test then SIGSTOPs this process: a writer frozen inside its transaction. It never
commits; killing it releases the lock (and SQLite discards the transaction).
"""

from __future__ import annotations

import sqlite3
import sys
import time


def main() -> None:
    conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE meta SET value = value WHERE key = 'revision'")
    print("LOCKED", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
