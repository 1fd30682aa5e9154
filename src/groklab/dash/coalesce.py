"""One computation shared by the requests that wait for it.

The page polls ``/api/list`` every 2 s from every open tab, and a listing reads every run under
the root (tens of ms for 200 runs). Computed once per request, 200 requests at once cost 200
listings and the server answers none of them in time. ``Coalesced`` computes while requests
wait and hands one result to all of those that arrived before the computation began; a request
never gets a result computed before it arrived, so the page sees a file the moment it is
written (no TTL, nothing stale), and a burst of any size costs at most two computations.
"""
from __future__ import annotations

import threading
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Coalesced(Generic[T]):
    """``get()`` returns ``fn()`` as computed by a call that began after ``get`` was called;
    concurrent callers share one call. An exception of ``fn`` is raised to every caller that
    shares it."""

    def __init__(self, fn: Callable[[], T]):
        self._fn = fn
        self._cond = threading.Condition()
        self._started = 0   # computations begun
        self._done = 0      # the computation whose outcome is in _result / _error
        self._running = False
        self._result: T | None = None
        self._error: BaseException | None = None
        self.waiting = 0    # callers waiting for another's computation (read by the tests)

    def get(self) -> T:
        with self._cond:
            target = self._started + 1  # the first computation to begin after this call
            while self._done < target:
                if self._running:
                    self.waiting += 1
                    self._cond.wait()
                    self.waiting -= 1
                    continue
                self._running, self._started = True, self._started + 1
                gen = self._started
                self._cond.release()
                try:
                    result, error = self._fn(), None
                except BaseException as e:  # handed to every caller that shares this one
                    result, error = None, e
                finally:
                    self._cond.acquire()
                self._result, self._error, self._done, self._running = result, error, gen, False
                self._cond.notify_all()
            if self._error is not None:
                raise self._error
            return self._result
