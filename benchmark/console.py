"""What a run shows on the console: the suite's own lines and a live progress display. Everything else printed while
the run executes (Ray's and Tune's output, the workers' log lines that Ray forwards to the driver) goes to the run
folder's log file, ``logs/run.log``; ``--verbose`` shows it on the console too.

With a TTY the progress is a set of tqdm bars (units done / total with the time left, then one bar per running unit:
its stage, step / total and loss); without one (CI, ``nohup``) it is one plain line per stage transition and a
summary line with the time left every ``SUMMARY_EVERY_S`` seconds.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, TextIO

from tqdm import tqdm

PREFIX = "[medssl-bench] "
SUMMARY_EVERY_S = 30.0


class Console:
    """The suite's lines go to ``stream`` (``err``: to ``err_stream``) and to the log file once one is open."""

    def __init__(self, stream: TextIO | None = None, err_stream: TextIO | None = None, *, verbose: bool = False) -> None:
        self.stream, self.err_stream, self.verbose = stream or sys.stdout, err_stream or sys.stderr, verbose
        self.log_path: Path | None = None
        self._log_file: TextIO | None = None
        self._lock = threading.RLock()
        self.bars_active = False  # a tqdm display owns the console's last lines: lines are written above it

    @property
    def is_tty(self) -> bool:
        """A terminal that can show bars: a TTY with a width (a pseudo-terminal without a size, e.g. ``script`` in CI,
        reports 0 columns and tqdm draws nothing there: plain lines instead)."""
        if not getattr(self.stream, "isatty", lambda: False)():
            return False
        try:
            fd = self.stream.fileno()
        except (AttributeError, ValueError, io.UnsupportedOperation):  # a Python stream that says it is a terminal
            return True
        try:
            return os.get_terminal_size(fd).columns > 0
        except OSError:
            return True

    def open_log(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path, self._log_file = path, open(path, "a", buffering=1, encoding="utf-8")

    def close(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def line(self, message: str, *, err: bool = False) -> None:
        text = PREFIX + message
        with self._lock:
            self.to_log(text + "\n")
            if self.bars_active and not err:
                tqdm.write(text, file=self.stream)
            else:
                print(text, file=self.err_stream if err else self.stream, flush=True)

    def to_log(self, text: str) -> None:
        with self._lock:
            if self._log_file is not None:
                self._log_file.write(text)

    def to_console(self, text: str) -> None:
        with self._lock:
            self.stream.write(text)
            self.stream.flush()

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        """Within: whatever the process prints (any thread) goes to the log file (and with ``verbose`` to the console);
        the suite's own lines still reach the console through ``line``."""
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = _Captured(self)
        try:
            yield
        finally:
            sys.stdout, sys.stderr = saved


class _Captured(io.TextIOBase):
    def __init__(self, console: Console) -> None:
        self.console = console

    def write(self, text: str) -> int:
        self.console.to_log(text)
        if self.console.verbose:
            self.console.to_console(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


_CURRENT = [Console()]


def current() -> Console:
    return _CURRENT[-1]


@contextlib.contextmanager
def session(log_path: Path | None, *, verbose: bool) -> Iterator[Console]:
    """A run's console, current until the run ends: its lines go to ``log_path`` too."""
    console = Console(sys.stdout, sys.stderr, verbose=verbose)
    if log_path is not None:
        console.open_log(log_path)
    _CURRENT.append(console)
    try:
        yield console
    finally:
        _CURRENT.remove(console)
        console.close()


# ---- progress ---------------------------------------------------------------------------------------------------
@dataclass
class Unit:
    """One unit of work (a Job) as the display tracks it. ``work``: planned seconds (or steps) of each stage kind."""

    title: str
    work: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)  # stages of each kind (a fine-tuning per cell)
    stage: str = ""
    step: int = 0
    steps: int = 0
    loss: float | None = None
    done_work: float = 0.0  # work of the stages it finished
    finished: bool = False
    started: bool = False
    bar: tqdm | None = field(default=None, repr=False)

    @property
    def total(self) -> float:
        return sum(self.work.values())

    def stage_work(self, stage: str) -> float:
        kind = stage.split(" ")[0]
        return self.work.get(kind, 0.0) / max(1, self.counts.get(kind, 1))

    @property
    def progress(self) -> float:
        if self.finished:
            return self.total
        current = self.stage_work(self.stage) * (self.step / self.steps if self.steps else 0.0)
        return min(self.total, self.done_work + current)


class Progress:
    """Units done / total with the time left, and each running unit's stage, step and loss (see the module doc).

    ``units``: name -> (title, {stage kind: planned work}, {stage kind: how many stages of that kind}); work in any
    unit that is the same for all (seconds from measured step times, or steps)."""

    def __init__(self, console: Console, units: dict[str, tuple[str, dict[str, float], dict[str, int]]], *,
                 summary_every_s: float = SUMMARY_EVERY_S, clock=time.monotonic) -> None:
        self.console, self.clock, self.summary_every_s = console, clock, summary_every_s
        self.units = {name: Unit(title=title, work=dict(work), counts=dict(counts)) for name, (title, work, counts) in units.items()}
        self.started_at = clock()
        self.first_step_at: float | None = None  # the first unit's first step: the time left is measured from here
        self._last_summary = self.started_at
        self._lock = threading.Lock()
        self.tty = console.is_tty
        self.overall: tqdm | None = None
        if self.tty:
            self.overall = tqdm(total=max(1.0, self.total_work), file=console.stream, position=0, dynamic_ncols=True,
                                bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed} elapsed{postfix}")
            self.overall.set_description_str(self._units_text())
            console.bars_active = True

    @property
    def total_work(self) -> float:
        return sum(u.total for u in self.units.values())

    @property
    def done_units(self) -> int:
        return sum(u.finished for u in self.units.values())

    def _units_text(self) -> str:
        running = sum(u.started and not u.finished for u in self.units.values())
        return f"units {self.done_units}/{len(self.units)} ({running} running)"

    def fraction_done(self) -> float:
        total = self.total_work
        return sum(u.progress for u in self.units.values()) / total if total else 0.0

    def eta_seconds(self) -> float | None:
        """Seconds left: time since the first step x work left / work done (None before 2 % is done). From the first
        step, not from the start: the cluster's and the first units' start-up (~15 s on a laptop, a sixth of the work
        at 2 % done) would otherwise be extrapolated over the whole run (a 5.5-minute run first said 9 min left)."""
        done = self.fraction_done()
        if done < 0.02 or self.first_step_at is None:
            return None
        return (self.clock() - self.first_step_at) * (1.0 - done) / done

    def event(self, name: str, stage: str, step: int, steps: int, loss: float | None) -> None:
        """A unit's latest step (from its worker); a new ``stage`` ends its previous one."""
        with self._lock:
            unit = self.units.get(name)
            if unit is None or unit.finished:
                return
            if self.first_step_at is None:
                self.first_step_at = self.clock()
            if stage != unit.stage:
                if unit.stage:
                    unit.done_work += unit.stage_work(unit.stage)
                unit.stage, unit.started = stage, True
                if not self.tty:
                    self.console.line(f"{unit.title}: {stage}" + (f" ({steps} steps)" if steps > 1 else ""))
            unit.step, unit.steps, unit.loss = step, steps, loss
            self._refresh(unit)

    def finish(self, name: str) -> None:
        with self._lock:
            unit = self.units.get(name)
            if unit is None or unit.finished:
                return
            unit.finished, unit.started = True, True
            if unit.bar is not None:
                unit.bar.close()
                unit.bar = None
            self._refresh(None)

    def stage_of(self, name: str) -> str:
        unit = self.units.get(name)
        return unit.stage if unit is not None else ""

    def _refresh(self, unit: Unit | None) -> None:
        if self.tty:
            if unit is not None and not unit.finished:
                if unit.bar is None:
                    unit.bar = tqdm(total=unit.steps or 1, file=self.console.stream, leave=False, dynamic_ncols=True,
                                    position=1 + sum(u.bar is not None for u in self.units.values()),
                                    bar_format="  {desc} {n_fmt}/{total_fmt}{postfix}")
                unit.bar.total = unit.steps or 1
                unit.bar.n = unit.step
                unit.bar.set_description_str(f"{unit.title}: {unit.stage}", refresh=False)
                unit.bar.set_postfix_str(f"loss {unit.loss:.4f}" if unit.loss is not None else "", refresh=False)
                unit.bar.refresh()
            assert self.overall is not None
            self.overall.n = self.fraction_done() * self.overall.total
            self.overall.set_description_str(self._units_text(), refresh=False)
            eta = self.eta_seconds()
            self.overall.set_postfix_str(f"about {format_duration(eta)} left" if eta is not None else "", refresh=False)
            self.overall.refresh()
            return
        now = self.clock()
        if now - self._last_summary >= self.summary_every_s:
            self._last_summary = now
            self.console.line(self.summary())

    def summary(self) -> str:
        eta = self.eta_seconds()
        left = f", about {format_duration(eta)} left" if eta is not None else ""
        return f"progress: {self._units_text()}, {100 * self.fraction_done():.0f} % of the planned work{left}"

    def close(self) -> None:
        with self._lock:
            for unit in self.units.values():
                if unit.bar is not None:
                    unit.bar.close()
                    unit.bar = None
            if self.overall is not None:
                self.overall.n = self.fraction_done() * self.overall.total
                self.overall.set_description_str(self._units_text(), refresh=False)
                self.overall.close()
                self.overall = None
            self.console.bars_active = False


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
