"""Progress of a long run over a known number of items (benchmark cases, self-test steps).

    from vidops._progress import Progress

    with Progress(len(items), weights=[cost(i) for i in items]) as progress:
        for item in items:
            progress.start(item.name)             # what is running now
            ...
            progress.update("vidops_cpu 1.2 ms")  # optional: a detail of the running item
            ...
            progress.done(f"{item.name}: ok")     # one item finished, with its one-line summary

Each finished item prints one line, `[3/41] 0:12 elapsed, ~2:40 left: <summary>`. On a terminal
(the stream is a TTY and TERM is not "dumb") a status line below those lines is redrawn in place
on every event: `[3/41 7%] 0:12 elapsed, ~2:40 left | <current item> | <detail>`. Anywhere else
(a pipe, a CI log, a file) nothing is redrawn: start/update print nothing, so the log holds one
plain line per item.
`note(text)` prints a permanent line in both modes (e.g. a warning), keeping the status line.

The expected remaining time is the elapsed time per unit of finished weight times the weight still
to do (weights default to 1 per item: the mean time per item so far); it is shown from the first
finished item on.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Optional, Sequence, TextIO


def format_seconds(s: float) -> str:
    """0:07, 2:40, 1:02:03."""
    s = max(0, int(round(s)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):
        return False


class Progress:
    """total items; weights (optional, one per item, in order) for the remaining-time estimate;
    stream (default sys.stderr); interactive: redraw a status line (default: the stream is a
    terminal); clock: a function returning seconds (tests pass a fake one)."""

    def __init__(self, total: int, weights: Optional[Sequence[float]] = None, stream: Optional[TextIO] = None,
                 interactive: Optional[bool] = None, clock=time.monotonic):
        if weights is not None and len(weights) != total:
            raise ValueError(f"Progress: {len(weights)} weights for {total} items")
        self.total = total
        self.weights = [float(w) for w in weights] if weights is not None else [1.0] * total
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = is_terminal(self.stream) if interactive is None else interactive
        self.clock = clock
        self.t0 = clock()
        self.finished = 0
        self.current = ""
        self.detail = ""
        self._status_shown = False

    # ---- numbers -------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.clock() - self.t0

    def remaining(self) -> Optional[float]:
        """Expected seconds left, None before the first finished item."""
        done_w = sum(self.weights[:self.finished])
        if self.finished == 0 or done_w <= 0:
            return None
        return self.elapsed() / done_w * sum(self.weights[self.finished:])

    def counts(self) -> str:
        """'[3/41] 0:12 elapsed, ~2:40 left'"""
        left = self.remaining()
        tail = f", ~{format_seconds(left)} left" if left is not None and self.finished < self.total else ""
        width = len(str(self.total))
        return f"[{self.finished:>{width}}/{self.total}] {format_seconds(self.elapsed())} elapsed{tail}"

    # ---- events --------------------------------------------------------------------------------
    def start(self, item: str) -> None:
        self.current, self.detail = item, ""
        self._redraw()

    def update(self, detail: str) -> None:
        self.detail = detail
        self._redraw()

    def done(self, summary: str = "") -> None:
        self.finished = min(self.total, self.finished + 1)
        text = summary or self.current
        self.current, self.detail = "", ""
        self._permanent(f"{self.counts()}: {text}")

    def note(self, text: str) -> None:
        self._permanent(text)

    def close(self) -> None:
        if self._status_shown:
            self._write("\r\x1b[K")
            self._status_shown = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ---- output --------------------------------------------------------------------------------
    def status_line(self) -> str:
        pct = 100 * self.finished // self.total if self.total else 100
        parts = [self.counts().replace("]", f" {pct}%]", 1)]
        parts += [p for p in (self.current, self.detail) if p]
        return " | ".join(parts)

    def _permanent(self, text: str) -> None:
        if self.interactive:
            self._write("\r\x1b[K" + text + "\n")
            self._status_shown = False
            self._redraw()
        else:
            self._write(text + "\n")

    def _redraw(self) -> None:
        if not self.interactive:
            return
        width = shutil.get_terminal_size((120, 24)).columns
        line = self.status_line()
        if len(line) > width - 1:
            line = line[:max(0, width - 2)] + "…"
        self._write("\r\x1b[K" + line)
        self._status_shown = True

    def _write(self, s: str) -> None:
        self.stream.write(s)
        self.stream.flush()


class StatusLine:
    """A progress callable for counters that need no line of their own ("compiled 12/540"): on
    a terminal each call redraws one status line in place (cleared by close()); anywhere else (a
    pipe, a file, a CI log) it prints nothing, so the output holds only the result.

        with StatusLine() as status:
            for i, item in enumerate(items, 1):
                status(f"compiled {i}/{len(items)}")
    """

    def __init__(self, stream: Optional[TextIO] = None, interactive: Optional[bool] = None):
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = is_terminal(self.stream) if interactive is None else interactive
        self._shown = False

    def __call__(self, text: str) -> None:
        if not self.interactive:
            return
        width = shutil.get_terminal_size((120, 24)).columns
        if len(text) > width - 1:
            text = text[:max(0, width - 2)] + "…"
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
