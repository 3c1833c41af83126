"""Ctrl-C on a command: the usual KeyboardInterrupt, and a deadline if the command cannot stop."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_a_command_that_does_not_stop_after_ctrl_c_exits_at_the_deadline() -> None:
    """The SIGINT handler main() installs raises KeyboardInterrupt as Python's own does, and arms a
    watchdog; here the interrupted code swallows the interrupt and hangs (as a stuck native call
    would), and the process still exits, with status 130 and a message."""
    code = (
        "import signal, sys, time\n"
        "import app.cli as c\n"
        "c.EXIT_GRACE_S = 1.0\n"
        "signal.signal(signal.SIGINT, c._interrupt)\n"
        "c.arm_exit_watchdog.__defaults__ = (1.0,)\n"
        "print('ready', flush=True)\n"
        "try:\n"
        "    time.sleep(30)\n"
        "except KeyboardInterrupt:\n"
        "    time.sleep(30)  # stuck in the clean-up\n"
        "sys.exit(0)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert "did not stop in time" in err
