"""`zoo serve`: a store in the browser, and read-only over HTTP.

    zoo serve --store S                     http://127.0.0.1:8765/ in a browser
    zoo.load("tiny-2l128", seed=1, step=256, store="http://host:8765/")   from another machine

One Starlette application (app.py): server-rendered pages (pages.py gathers what a page shows,
templates/*.html lay it out, rendered by Starlette's Jinja2Templates with autoescape; charts drawn
as inline SVG by charts.py, so nothing is fetched from a CDN) and the store's own files, read-only
(store_files.py), which fsspec's HTTP filesystem reads as it reads any store; every byte is
verified on read as always. A superposition model (the ReLU output model) has its own page,
/superposition/NAME/SEED?step=N (superposition_page.py, pictures by feature_charts.py). A run's
dictionaries are at /dictionaries/NAME/SEED, one at /dictionary/NAME/SEED/RECORD?feature=F, with
what that feature is (dictionary_page.py, from zoo.dictionaries.feature_view).
Starlette, uvicorn and Jinja2 are the `serve` extra.
"""
