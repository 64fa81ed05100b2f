"""Run an ASGI app as a real HTTP server on 127.0.0.1, in a thread of the test process."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from tests.support.ports import free_port


class LoopbackServer:
    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._server.force_exit = True  # do not wait for idle keep-alive connections
        self._thread.join(5)
