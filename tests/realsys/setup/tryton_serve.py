"""Serve Tryton's WSGI application single-threaded on a loopback address.

Run by realsys.py inside Tryton's own virtualenv (``TRYTOND_CONFIG`` and
``TRYTOND_DATABASE_NAMES`` set). One request at a time on purpose: Tryton on SQLite loses
sequence updates under concurrent writes (the stock threaded server then answers "The code on
party must be unique" for every later create), and a serialising server avoids that.
"""

from __future__ import annotations

import sys

from trytond.application import app  # type: ignore[import-not-found]
from werkzeug.serving import run_simple  # type: ignore[import-not-found]


def main(host: str, port: int) -> None:
    run_simple(host, port, app, threaded=False, processes=1, use_reloader=False)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
