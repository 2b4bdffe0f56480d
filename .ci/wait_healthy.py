"""Wait until a server started in the background answers /healthz (standard library only).

    python3 wait_healthy.py LOG_FILE PID TIMEOUT_S

Reads the address from the server's "Hubbub listening on http://HOST:PORT" line in LOG_FILE;
fails as soon as PID has exited, or after TIMEOUT_S seconds.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.request

LISTENING = re.compile(r"Hubbub listening on (?P<url>http://[^\s\"]+)")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main(log_file: str, pid: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    url = None
    while time.monotonic() < deadline:
        if not alive(pid):
            print(f"wait_healthy: process {pid} exited", file=sys.stderr)
            return 1
        if url is None:
            with open(log_file, encoding="utf-8", errors="replace") as log:
                found = LISTENING.search(log.read())
            url = found.group("url") if found else None
        if url is not None:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
                    body = json.loads(response.read())
                if response.status == 200 and body.get("status") == "ok":
                    print(f"wait_healthy: {url}/healthz answered {body}")
                    return 0
            except OSError:
                pass
        time.sleep(0.5)
    print(f"wait_healthy: no healthy server after {timeout_s} s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
