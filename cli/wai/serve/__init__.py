"""`wai serve`: the Workers AI REST API (and its OpenAI-compatible routes) over the local backend.

protocol.py reads request bodies and writes reply shapes; worker.py runs one model's requests
one at a time in a thread of its own, behind a bounded queue; app.py holds the routes, the
token check and the access log; runner.py starts Uvicorn and handles the signals; command.py
is what the `wai serve` command runs. page.html is the browser page served at `/`.

Starlette and Uvicorn are imported by app.py and runner.py only, which command.py imports
after checking that the `serve` extra is installed.
"""
