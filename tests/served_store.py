"""`zoo serve`'s app on a free loopback port, in a thread: an HTTP store for tests."""
from __future__ import annotations

import http.client
import socket
import threading
import time


class Server:
    """The app serving `store`, for the length of a test (module)."""

    def __init__(self, store, token=None) -> None:
        import uvicorn

        from zoo.serve.app import make_app

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = uvicorn.Config(make_app(store, token=token), host="127.0.0.1", port=self.port,
                                log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}/"

    def raw(self, method: str, path: str, headers: dict | None = None) -> tuple[int, bytes]:
        """A request sent as written (no client-side normalisation of '..' or %2e)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        connection.putrequest(method, path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            connection.putheader(key, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
