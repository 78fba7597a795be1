"""Helpers for tests that start a real server process."""

from __future__ import annotations

import subprocess
import time

import httpx


def wait_until_ready(server: subprocess.Popen, url: str, timeout: float = 60) -> None:
    """Poll ``url``/health/ready until 200; fails if the process exits or the timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            output = server.communicate()[0]
            raise AssertionError(output.decode() if isinstance(output, bytes) else output)
        try:
            if httpx.get(f"{url}/health/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not become ready"
        time.sleep(0.1)
