"""Helpers for tests that start a real process (the server, Prometheus, nginx) and wait for it to answer."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request


def _status(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_for(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` (loopback only) until it answers 200; fail early, with its output when piped, if ``process``
    exits."""
    assert url.startswith("http://127.0.0.1:"), url
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            output = process.communicate()[0] if process.stdout is not None else b""
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered:\n"
                               f"{(output or b'').decode(errors='replace')}")
        try:
            status, body = _status(url)
            if status == 200:
                return
            last = (status, body[:200])
        except OSError as error:
            last = error
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s (last: {last!r})")
