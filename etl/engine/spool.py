"""A side's window read whole on a thread of its own, through a temporary file, and handed on
page by page as soon as each page is in.

A side listed by page number rather than in updated-at order (Omie) is read whole before this
run writes into it: its writes would move records out of the filtered listing and shift the
later pages, skipping records. Nothing stops the run from planning and writing into the
*other* side meanwhile, so the reading goes on beside the writes instead of before them: the
run takes pages as they come, and only a write into the spooled side waits for
:meth:`Spool.whole`. The file keeps the memory to one page at a time, however long the
window.

A stop is seen while the run waits for a page (not only between pages: a vendor can keep one
page waiting a minute, as Omie's rule against repeated calls does). The reading thread is then
told to end after the page in progress and is not waited for: it holds nothing of the run's
state, and its page, if it comes, is dropped.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Callable, Generator, Iterator

from etl.connectors.base import Record

#: how often a run waiting for a page looks for a stop request, in seconds
CHECK_EVERY_S = 0.2
#: how long :meth:`Spool.close` waits for the reading thread to end before leaving it
CLOSE_WAIT_S = 0.5


class Spool:
    """Reads ``pages`` to the end on its own thread (named ``name``) as soon as it is made;
    iterate it for the pages in order, as they arrive. ``check`` is called while the reader
    waits for a page and raises to stop it (a stop request)."""

    def __init__(self, pages: Generator[list[Record], None, None], name: str, *,
                 check: Callable[[], None] | None = None) -> None:
        self._pages = pages
        self._check = check
        self._file = tempfile.TemporaryFile("w+b")  # noqa: SIM115 - closed by close()
        self._cond = threading.Condition()
        self._spans: list[tuple[int, int]] = []  # (offset, length) of each page in the file
        self._done = False
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._read, name=name, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        end = 0
        error: BaseException | None = None
        try:
            for page in self._pages:
                data = json.dumps(page, ensure_ascii=False).encode()
                with self._cond:
                    if self._cancelled:
                        break
                    self._file.seek(end)
                    self._file.write(data)
                    self._spans.append((end, len(data)))
                    end += len(data)
                    self._cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, raised there
            error = exc
        finally:
            self._pages.close()  # the generator's own clean-up runs on this thread
            with self._cond:
                self._done, self._error = True, error
                if self._cancelled:  # nobody reads on: the file is this thread's to drop
                    self._file.close()
                self._cond.notify_all()

    def __iter__(self) -> Iterator[list[Record]]:
        n = 0
        while True:
            with self._cond:
                self._wait(pages=n + 1)
                if self._error is not None:
                    raise self._error
                if n >= len(self._spans):
                    return
                offset, length = self._spans[n]
                self._file.seek(offset)
                data = self._file.read(length)
            n += 1
            page: list[Record] = json.loads(data)
            yield page

    def whole(self) -> None:
        """Wait until every page is read; raise what stopped the reading, if anything did
        (and ``check``'s stop while waiting)."""
        with self._cond:
            self._wait(pages=None)
            if self._error is not None:
                raise self._error

    def _wait(self, *, pages: int | None) -> None:
        """Under the lock: wait until ``pages`` pages are in (None: all of them) or the reading
        is over, calling ``check`` every :data:`CHECK_EVERY_S` meanwhile."""
        while not self._done and (pages is None or len(self._spans) < pages):
            self._cond.wait(CHECK_EVERY_S)
            if self._check is not None:
                self._check()

    def close(self) -> None:
        """Stop reading after the page in progress and drop the file. The thread is waited
        for :data:`CLOSE_WAIT_S` at most (it is done already when every page was read); one
        still waiting on its vendor ends on its own and drops the file itself."""
        with self._cond:
            self._cancelled = True
        self._thread.join(CLOSE_WAIT_S)
        with self._cond:
            if self._done:
                self._file.close()
