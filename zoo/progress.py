"""Progress on stderr: a tqdm bar on a terminal, a plain line now and then elsewhere.

Workers learn which from ``ZOO_PROGRESS`` (set by the client from its own stderr), because their
stderr is a pipe even when the user watches a terminal.
"""

from __future__ import annotations

import os
import sys
import time

_LINE_EVERY_S = 5.0


def _tty() -> bool:
    mode = os.environ.get("ZOO_PROGRESS")
    return mode == "tty" if mode else sys.stderr.isatty()


class _Lines:
    def __init__(self, total: int | None, desc: str, unit: str):
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self.last, self.shown = time.monotonic(), None  # the count of the last line printed

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= _LINE_EVERY_S:
            self._line()

    def _line(self) -> None:
        self.last, self.shown = time.monotonic(), self.n
        of = f"/{self.total}" if self.total else ""
        print(f"zoo: {self.desc} {self.n}{of} {self.unit}", file=sys.stderr, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None and self.shown is not None and self.shown != self.n:  # a long run: say where it ended
            self._line()


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress(total: int | None, desc: str, unit: str = "img", unit_scale: bool = False, initial: int = 0,
             enabled: bool = True):
    if not enabled:  # e.g. ranks other than 0: one count is shown, not one per rank
        return _Silent()
    if _tty():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, initial=initial, file=sys.stderr)
    bar = _Lines(total, desc, unit)
    bar.n = initial
    return bar


def say(message: str) -> None:
    """A step of a long command, for the user watching it."""
    print(f"zoo: {message}", file=sys.stderr, flush=True)
