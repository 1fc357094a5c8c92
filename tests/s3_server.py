"""A real S3-protocol server on loopback (moto's server mode) for store tests.

Nothing reaches the network: the server listens on 127.0.0.1 on a free port and the dummy
credentials are passed through storage_options, never read from the environment.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def storage_options_for(endpoint: str) -> dict:
    return {
        "key": "testing",
        "secret": "testing",
        "skip_instance_cache": True,
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "eu-west-1"},
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2, "read_timeout": 10},
    }


@contextmanager
def s3_bucket(bucket: str | None = None, prefix: str = "store") -> Iterator[tuple[str, dict]]:
    """Start a loopback S3 server with one bucket; yields (s3:// URL, storage_options).

    moto keeps its buckets in process-global state shared by every server it starts, so each
    call makes a bucket of its own name (two fixtures in one pytest process never collide).
    """
    import logging

    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    bucket = bucket or f"zoo-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        options = storage_options_for(f"http://127.0.0.1:{port}")
        s3fs.S3FileSystem(**options).mkdir(bucket)
        yield f"s3://{bucket}/{prefix}", options
    finally:
        server.stop()
