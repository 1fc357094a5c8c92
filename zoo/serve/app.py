"""The `zoo serve` application: pages for people, the store's files for fsspec, nothing writable.

Routes answer GET (and HEAD) only, so PUT, POST and DELETE get 405. With a token, every request
needs `Authorization: Bearer TOKEN` (fsspec: storage_options={"headers": {...}}) or, in a browser,
`?token=TOKEN` once (then a cookie). A ZooError (an unknown model, seed or step) is a 404 page
that lists what exists; an IntegrityError (a corrupt blob) a 500 page that says so: a page never
shows numbers computed from bytes that failed their check.

A page at a step that was not stored never replays inside its request: the step is replayed once
by the server's shared replays (shared_replays.py), and unless that takes under `replay_wait_s`
the page answers at once (202) with the replay's progress, reloading itself until it is ready.
"""
from __future__ import annotations

import hmac
import io
import zipfile
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from zoo.serve import pages
from zoo.serve.attribution_page import attribution_page, attributions_page
from zoo.serve.dictionary_page import dictionaries_page, dictionary_page
from zoo.serve.shared_replays import Replaying, SharedReplays
from zoo.serve.store_files import is_store_path, store_file
from zoo.serve.superposition_page import superposition_page
from zoo_common.errors import IntegrityError, NotFoundError, ZooError

DEFAULT_PROMPT = "def add(a, b): return a + b. def add(a, b): return a + b."
_COOKIE = "zoo_token"


def make_app(store, *, token: str | None = None, replay_wait_s: float = 1.0) -> Starlette:
    """The application serving `store` (a local store: its files are served as they are).

    A replay that finishes within `replay_wait_s` answers with its page directly; a longer one
    answers with the waiting page at that point. `app.state.replays` is the SharedReplays."""
    if not store.location.is_local:
        raise ZooError(f"zoo serve serves a local store folder; {store.url} is not one (copy it "
                       f"here with `zoo pull {store.url} --store DIR`, then serve DIR)")
    root = Path(store.location.local_path())
    replays = SharedReplays(wait_s=replay_wait_s)

    def html(fn):
        def endpoint(request: Request) -> Response:
            return pages.render(request, fn(request))
        return endpoint

    def int_param(request: Request, name: str, default: int | None = None) -> int | None:
        text = request.query_params.get(name)
        if text in (None, ""):
            return default
        if not text.lstrip("-").isdigit():
            raise ZooError(f"{name} must be a whole number, got {text!r}")
        return int(text)

    def run_step(request: Request) -> pages.Page:
        p = request.path_params
        return pages.run_page(store, p["name"], p["seed"], p["step"], int_param(request, "sample"))

    def attention(request: Request) -> pages.Page:
        p = request.path_params
        run = pages.open_run(p["name"], seed=p["seed"], store=store)
        step = int_param(request, "step", run.checkpoint_steps()[-1])
        return pages.attention_page(store, p["name"], p["seed"], step,
                                    request.query_params.get("prompt") or DEFAULT_PROMPT,
                                    weights_ready=replays.require)

    def superposition(request: Request) -> pages.Page:
        p = request.path_params
        return superposition_page(store, p["name"], p["seed"], int_param(request, "step"),
                                  request.query_params.get("dims") or "seed",
                                  weights_ready=replays.require)

    def dictionaries(request: Request) -> pages.Page:
        p = request.path_params
        return dictionaries_page(store, p["name"], p["seed"])

    def dictionary(request: Request) -> pages.Page:
        p = request.path_params
        return dictionary_page(store, p["name"], p["seed"], p["record"],
                               int_param(request, "feature"), int_param(request, "page"),
                               weights_ready=replays.require)

    def attributions(request: Request) -> pages.Page:
        p = request.path_params
        return attributions_page(store, p["name"], p["seed"])

    def attribution(request: Request) -> pages.Page:
        p = request.path_params
        return attribution_page(store, p["name"], p["seed"], p["key"],
                                request.query_params.get("method"), int_param(request, "top"))

    def compare(request: Request) -> pages.Page:
        q = request.query_params
        return pages.compare_page(store, q.get("a"), q.get("b"), q.get("metric"), q.get("branch"))

    def snapshot_zip(request: Request) -> Response:
        from zoo.registry.snapshots import snapshot

        p = request.path_params
        replays.require(pages.open_run(p["name"], seed=p["seed"], store=store), p["step"])
        folder = snapshot(p["name"], seed=p["seed"], step=p["step"], store=store)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(Path(folder).rglob("*")):
                if file.is_file():
                    archive.write(file, file.relative_to(folder))
        name = f"{p['name']}-seed{p['seed']}-step{p['step']}.zip".replace("@", "-")
        return Response(buffer.getvalue(), media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    def files(request: Request) -> Response:
        path = request.path_params["path"]
        if is_store_path(path):
            return store_file(request, root, path)
        raise ZooError(f"no page /{path}; pages: /, /model/NAME, /run/NAME/SEED/STEP, "
                       f"/attention/NAME/SEED, /superposition/NAME/SEED, /dictionaries/NAME/SEED, "
                       f"/dictionary/NAME/SEED/RECORD, /attributions/NAME/SEED, "
                       f"/attribution/NAME/SEED/KEY, /compare")

    def on_zoo_error(request: Request, exc: ZooError) -> Response:
        if isinstance(exc, IntegrityError):
            return pages.render(request, pages.corrupt(str(exc)), status_code=500)
        # a NotFoundError, or "no model ...", "no seed ...", "no step ...": a 404
        missing = isinstance(exc, NotFoundError) or str(exc).startswith("no ")
        return pages.render(request, pages.not_found(str(exc), store, missing=missing),
                            status_code=404 if missing else 400)

    def on_replaying(request: Request, exc: Replaying) -> Response:
        response = pages.render(request, pages.replaying(exc.replay, exc.ahead), status_code=202)
        response.headers["Retry-After"] = str(pages.REFRESH_S)
        return response

    read = ["GET", "HEAD"]
    routes = [
        Route("/", html(lambda request: pages.store_page(store)), methods=read),
        Route("/model/{name}", html(lambda r: pages.model_page(store, r.path_params["name"])),
              methods=read),
        Route("/run/{name}/{seed:int}/{step:int}", html(run_step), methods=read),
        Route("/run/{name}/{seed:int}/{step:int}/snapshot.zip", snapshot_zip, methods=read),
        Route("/attention/{name}/{seed:int}", html(attention), methods=read),
        Route("/superposition/{name}/{seed:int}", html(superposition), methods=read),
        Route("/dictionaries/{name}/{seed:int}", html(dictionaries), methods=read),
        Route("/dictionary/{name}/{seed:int}/{record}", html(dictionary), methods=read),
        Route("/attributions/{name}/{seed:int}", html(attributions), methods=read),
        Route("/attribution/{name}/{seed:int}/{key}", html(attribution), methods=read),
        Route("/compare", html(compare), methods=read),
        Route("/{path:path}", files, methods=read),
    ]
    middleware = [Middleware(_TokenCheck, token=token)] if token else []
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={ZooError: on_zoo_error, Replaying: on_replaying})
    app.state.replays = replays
    return app


class _TokenCheck(BaseHTTPMiddleware):
    def __init__(self, app, token: str) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next):
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        given = given or request.query_params.get("token") or request.cookies.get(_COOKIE, "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return PlainTextResponse("a token is required: Authorization: Bearer TOKEN (or "
                                     "?token=TOKEN in a browser)\n", status_code=401)
        response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie(_COOKIE, self.token, httponly=True, samesite="strict")
        return response
