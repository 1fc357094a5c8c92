"""`zoo serve`: the store in a browser, and read-only over HTTP (zoo/serve)."""
from __future__ import annotations

import argparse

from zoo.cli.common import add_store_argument, open_store

EPILOG = """\
examples:
  zoo serve --store ./zoo-store            http://127.0.0.1:8765/ : models, curves, batches,
                                           attention patterns, comparisons
  zoo serve --host 0.0.0.0 --token SECRET  for other machines; they read the store with
      zoo.load("tiny-2l128", seed=1, step=256, store="http://HOST:8765/",
               storage_options={"headers": {"Authorization": "Bearer SECRET"}})
      zoo pull http://HOST:8765/ tiny-2l128 --store ./mine      (every byte verified on read)

Read-only: PUT, POST and DELETE are refused, and no path leaves the store.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve the store: pages in a browser, and read-only over HTTP",
        description="Serve a local store: pages for people and the store's files for zoo.load, "
                    "zoo.batch, zoo.replay and zoo pull on other machines (read-only).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_store_argument(parser)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 "
                             "serves every network this machine is on)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    parser.add_argument("--token", default=None,
                        help="require this bearer token on every request")
    parser.set_defaults(handler=_serve)


def _serve(args) -> int:
    from zoo_common.errors import ZooError

    if not 0 < args.port < 65536:
        raise ZooError(f"--port {args.port} is not a port (1..65535)")
    try:
        import uvicorn

        from zoo.serve.app import make_app
    except ImportError as exc:
        raise ZooError(f"zoo serve needs starlette and uvicorn: pip install 'model-zoo[serve]' "
                       f"({exc})") from None
    store = open_store(args)
    app = make_app(store, token=args.token)
    _check_port_free(args.host, args.port)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.token:
        print(f"zoo serve: note: {args.host} is reachable from other machines and no --token "
              f"is set: anyone who can reach it can read the store")
    print(f"zoo serve: {store.url} at http://{args.host}:{args.port}/ (read-only; Ctrl-C stops)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _check_port_free(host: str, port: int) -> None:
    """One clear line for a port another program holds, before "serving at" is printed."""
    import socket

    from zoo_common.errors import ZooError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ZooError(f"cannot serve at {host}:{port}: {exc.strerror or exc} (another program "
                           f"holds the port?); choose another with --port") from None
