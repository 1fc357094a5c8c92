"""The store's files over HTTP, read-only: what fsspec's HTTP filesystem needs to read a store.

A store path (its first part one of the store's own top-level names) answers GET and HEAD: a file
with its bytes and Content-Length, a folder with an HTML list of links (fsspec's HTTP `ls` reads
links; a folder's ends in '/'). Nothing else: every other method is refused by the routes, and a
path that could leave the store (a '..' or '.' part, however encoded, a backslash, a NUL, a
symlink whose target is outside) is answered 404 before anything is opened.
"""
from __future__ import annotations

import html
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

STORE_ENTRIES = ("zoo.json", "blobs", "corpora", "runs", "evals", "cards")


def is_store_path(path: str) -> bool:
    return path.split("/", 1)[0] in STORE_ENTRIES


def resolve_inside(root: Path, relpath: str) -> Path | None:
    """The file or folder `relpath` names inside `root`, or None when it would leave it."""
    parts = relpath.split("/")
    if any(part in (".", "..") for part in parts) or "\\" in relpath or "\x00" in relpath:
        return None
    if any(part.startswith(".") for part in parts if part):  # writers' temporary files
        return None
    base = root.resolve()
    target = (base / relpath).resolve()  # follows symlinks: their target must stay inside too
    if target != base and base not in target.parents:
        return None
    return target


def store_file(request: Request, root: Path, relpath: str) -> Response:
    target = resolve_inside(root, relpath.rstrip("/"))
    if target is None or not target.exists():
        return Response(status_code=404, content=f"not in the store: /{html.escape(relpath)}\n",
                        media_type="text/plain")
    if target.is_dir():
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in target.iterdir()
                       if not p.name.startswith("."))
        links = "\n".join(f'<a href="{html.escape(n)}">{html.escape(n)}</a><br>' for n in names)
        body = f"<!doctype html><title>/{html.escape(relpath)}</title>\n{links}\n"
        return HTMLResponse(body, headers={"Cache-Control": "no-cache"})
    return FileResponse(target, media_type="application/octet-stream",
                        headers={"Cache-Control": "no-cache"})
