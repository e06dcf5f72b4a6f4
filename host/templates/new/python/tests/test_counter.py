"""The counter counts: starts `dohost serve` on a free port with a fresh
data directory and asks it three times. Run with `python3 -m unittest`; it
runs the `dohost` on PATH, or the one DOHOST names."""

import os
import re
import subprocess
import tempfile
import threading
import unittest
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
DOHOST = os.environ.get("DOHOST", "dohost")
# The first build installs the build tools and compiles the component.
START_SECONDS = 600


def serve(data):
    """Starts the server; returns it, its URL and its log so far."""
    try:
        server = subprocess.Popen(
            [DOHOST, "serve", "--listen", "127.0.0.1:0",
             "--config", str(PROJECT / "dohost.toml"), "--data", data],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
    except OSError as e:
        raise RuntimeError(f"cannot run {DOHOST} ({e}): put dohost on PATH or set DOHOST")
    log = []
    found = threading.Event()
    url = []

    def read():
        for line in server.stderr:
            log.append(line)
            serving = re.search(r" on (http://\S+)", line)
            if serving and not url:
                url.append(serving.group(1))
                found.set()
        found.set()

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(START_SECONDS) or not url:
        server.kill()
        server.wait()
        raise RuntimeError("dohost serve did not start:\n" + "".join(log))
    return server, url[0]


class CounterTest(unittest.TestCase):
    def test_the_counter_counts(self):
        with tempfile.TemporaryDirectory(prefix="{{name}}-test-") as data:
            server, url = serve(data)
            try:
                for expected in ["1", "2", "3"]:
                    with urllib.request.urlopen(url) as response:
                        self.assertEqual(response.status, 200)
                        self.assertEqual(response.read().decode(), expected)
            finally:
                server.terminate()
                server.wait()


if __name__ == "__main__":
    unittest.main()
