"""Progress that reads well live and in a saved notebook: bars for library loops, a line per notebook for the runner.

* :func:`progress_bar`: ``tqdm.auto`` (a widget in JupyterLab, text in a terminal), except in a kernel started by
  ``python -m bnlib.run`` (``$BNLIB_PROGRESS=text``): there a saved notebook would keep each widget frozen at its
  first frame ("0% 0/81"), so the bar draws nothing while it runs and prints one plain line when it closes.
* :class:`NotebookWatch`: the runner's view of a notebook executing under papermill, from the copy papermill saves
  after every cell: cells done of all, elapsed time, time left estimated from the previous run.

Example:
    >>> import os
    >>> os.environ[TEXT_ENV] = "text"
    >>> for _ in progress_bar(range(3), desc="runs", unit="run"):
    ...     pass  # doctest: +ELLIPSIS
    runs: 3/3 runs in ... s
    >>> del os.environ[TEXT_ENV]
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

TEXT_ENV = "BNLIB_PROGRESS"  # "text": bars print one line when they close (set by bnlib.run for its kernels)


def duration(seconds: float) -> str:
    """Seconds as a short clock reading.

    Example:
        >>> duration(42), duration(605), duration(7322)
        ('42 s', '10 min 5 s', '2 h 2 min')
    """
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


class TextBar:
    """tqdm's interface as bnlib uses it (``update``, ``set_postfix``, ``close``, iteration, ``with``); prints
    ``desc: n/total units in T s`` and the postfix when it closes (nothing when ``leave`` is false or disabled)."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None,
                 unit: str = "it", initial: int = 0, disable: bool = False, leave: bool = True, **_ignored) -> None:
        self.iterable, self.desc, self.unit, self.disable, self.leave = iterable, desc or "", unit, disable, leave
        self.total = len(iterable) if total is None and hasattr(iterable, "__len__") else total
        self.initial = self.n = initial
        self.postfix: dict = {}
        self.start, self.closed = time.perf_counter(), False

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> TextBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **values) -> None:
        self.postfix = values

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.disable or not self.leave:
            return
        done = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        plural = "" if self.unit.endswith("s") or self.n == 1 else "s"
        extra = [f"{self.initial} from the cache"] if self.initial else []
        extra += [f"{k} {v}" for k, v in self.postfix.items()]
        tail = f" ({', '.join(extra)})" if extra else ""
        print(f"{self.desc + ': ' if self.desc else ''}{done} {self.unit}{plural} in "
              f"{duration(time.perf_counter() - self.start)}{tail}", flush=True)


def progress_bar(iterable: Iterable | None = None, **kwargs):
    """A progress bar: ``tqdm.auto.tqdm(iterable, **kwargs)``, or a :class:`TextBar` under ``$BNLIB_PROGRESS=text``.

    Example:
        >>> bar = progress_bar(total=2, desc="steps", disable=True)
        >>> bar.update(2); bar.close()
    """
    if os.environ.get(TEXT_ENV) == "text":
        return TextBar(iterable, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


def cells_done(path: Path) -> tuple[int, int] | None:
    """(cells papermill has completed, all cells) in the notebook it is writing at ``path``; None while unreadable.

    Example:
        >>> cells_done(Path("/no/such.ipynb")) is None
        True
    """
    try:
        cells = json.loads(path.read_text())["cells"]
    except (OSError, ValueError, KeyError, TypeError):  # not written yet, or caught mid-write
        return None
    done = sum(c.get("metadata", {}).get("papermill", {}).get("status") == "completed" for c in cells)
    return done, len(cells)


class NotebookWatch:
    """While a notebook executes, report its progress from the copy papermill saves at ``running``.

    ``live`` (one notebook at a time, on a terminal): one line rewritten every few seconds. Otherwise a new line
    when cells were done since the last one and at least ``every`` seconds have passed, or after ``5 * every``
    seconds in any case (a long cell still shows the clock), so that several notebooks (``--jobs``) or a log file
    stay readable. ``expected_s`` (the expected wall time, or None) gives the estimate of the time left;
    ``expected_from`` names where it comes from (``bnlib.lab.records.expected_seconds``: "last execution" or "typical at quick:").

    Example:
        >>> NotebookWatch(Path("/no/x.running.ipynb"), "x", expected_s=100).line(2, 10, elapsed=30)
        '[bnlib.run] x: 2/10 cells, 30 s elapsed, about 1 min 10 s left (last execution 1 min 40 s)'
        >>> NotebookWatch(Path("/no/x.running.ipynb"), "x", 100, expected_from="typical at quick:").line(2, 10, 130)
        '[bnlib.run] x: 2/10 cells, 2 min 10 s elapsed, over the expected time (typical at quick: 1 min 40 s)'
    """

    def __init__(self, running: Path, name: str, expected_s: float | None, live: bool = False, every: float = 60.0,
                 stream=None, expected_from: str = "last execution") -> None:
        # absolute now: papermill changes the process's directory to the notebook's while it executes
        self.running = Path(running).absolute()
        self.name, self.expected_s, self.live, self.every = name, expected_s, live, every
        self.expected_from = expected_from
        self.stream = stream or sys.stdout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"watch-{name}", daemon=True)

    def line(self, done: int, total: int, elapsed: float) -> str:
        """The progress line for ``done`` of ``total`` cells after ``elapsed`` seconds."""
        text = f"[bnlib.run] {self.name}: {done}/{total} cells, {duration(elapsed)} elapsed"
        if self.expected_s:
            left = self.expected_s - elapsed
            text += (f", about {duration(left)} left" if left > 0 else ", over the expected time") + \
                f" ({self.expected_from} {duration(self.expected_s)})"
        return text

    def __enter__(self) -> NotebookWatch:
        self.start = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self.live:
            self.stream.write("\r\033[K")  # clear the live line: the runner prints the outcome next
            self.stream.flush()

    def _loop(self) -> None:
        last_done, last_print = 0, time.perf_counter()
        while not self._stop.wait(2.0 if self.live else 5.0):
            counts = cells_done(self.running)
            if counts is None:
                continue
            done, total = counts
            now = time.perf_counter()
            if self.live:
                self.stream.write("\r\033[K" + self.line(done, total, now - self.start))
                self.stream.flush()
            elif (done > last_done and now - last_print >= self.every) or now - last_print >= 5 * self.every:
                print(self.line(done, total, now - self.start), file=self.stream, flush=True)
                last_done, last_print = done, now
