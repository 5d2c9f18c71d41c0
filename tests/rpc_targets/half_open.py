"""A half-open peer: takes TCP connections and never says a word (nor closes them).

Prints ``READY <port>`` once listening on 127.0.0.1 (port 0 unless one is given).
"""

from __future__ import annotations

import socket
import sys


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    listener = socket.socket()
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    print("READY", listener.getsockname()[1], flush=True)
    held = []
    while True:
        conn, _ = listener.accept()
        held.append(conn)  # never read, written or closed


if __name__ == "__main__":
    main()
