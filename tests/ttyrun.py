"""Run medcli with a real terminal (a pty) on some of its standard streams.

Terminal manners (progress bars only on a terminal, no image bytes to a
terminal, stdin on a terminal refused) can only be tested with a real pty.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys


def run_on_tty(*args, tty: tuple[str, ...] = ("stdout",), env: dict | None = None, timeout: float = 120):
    """Run ``python -m medcli ARGS`` with the streams named in ``tty`` on a pty.

    The other streams are pipes (stdin: /dev/null). Returns the completed process
    and the bytes the program showed on the terminal.
    """
    main, sub = pty.openpty()
    streams = {
        "stdin": sub if "stdin" in tty else subprocess.DEVNULL,
        "stdout": sub if "stdout" in tty else subprocess.PIPE,
        "stderr": sub if "stderr" in tty else subprocess.PIPE,
    }
    try:
        r = subprocess.run([sys.executable, "-m", "medcli", *map(str, args)], env=env, timeout=timeout, **streams)
        os.close(sub)
        sub = -1
        shown = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            shown += chunk
        return r, shown
    finally:
        if sub >= 0:
            os.close(sub)
        os.close(main)
