"""Run the crash driver in a subprocess, SIGKILL it after a delay, and collect its acknowledgements."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[2]


def _read_lines(stream: IO[str], lines: list[str], ready: threading.Event) -> None:
    for line in stream:
        lines.append(line.strip())
        if line.startswith("ready"):
            ready.set()
    ready.set()


def run_and_kill(driver_args: list[str], delay_s: float, ready_timeout_s: float = 60) -> list[tuple[int, int]]:
    """Start `python -m exchange.testing.crashdriver ARGS`, kill -9 it `delay_s` after it is ready,
    and return its acknowledgements as (seq, index) pairs, in the order it printed them."""
    proc = subprocess.Popen([sys.executable, "-m", "exchange.testing.crashdriver", *driver_args],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    assert proc.stdout is not None
    lines: list[str] = []
    ready = threading.Event()
    reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines, ready), daemon=True)
    reader.start()
    try:
        assert ready.wait(timeout=ready_timeout_s), "the driver never got ready"
        time.sleep(delay_s)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        reader.join(timeout=60)
    return [(int(seq), int(index)) for _, seq, index in (line.split() for line in lines if line.startswith("ack "))]
