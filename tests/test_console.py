"""The run's console (benchmark/console.py): plain lines per stage transition and a summary with the time left
without a TTY, tqdm bars with one, and whatever else the process prints in the run's log file."""
from __future__ import annotations

import io
import sys

from benchmark.console import Console, Progress, format_duration, session


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


UNITS = {
    # title, planned seconds per stage kind, stages per kind (two cells: two fine-tunings)
    "a": ("csi/unet2d on brats", {"pretrain": 10.0, "finetune": 20.0}, {"pretrain": 1, "finetune": 2}),
    "b": ("scratch/unet2d on brats", {"finetune": 30.0}, {"finetune": 2}),
}


def test_without_a_tty_one_line_per_stage_and_a_summary_with_the_time_left(tmp_path):
    out, clock = io.StringIO(), FakeClock()
    console = Console(out, out)
    console.open_log(tmp_path / "run.log")
    progress = Progress(console, UNITS, summary_every_s=30, clock=clock)
    clock.now = 15.0  # start-up: the first step comes 15 s after the plan
    for step in range(1, 11):
        progress.event("a", "pretrain", step, 10, 1.0 / step)
    progress.event("a", "finetune 100%", 1, 5, 0.5)
    assert out.getvalue().count("csi/unet2d on brats: pretrain (10 steps)") == 1  # one line per transition, not per step
    assert "csi/unet2d on brats: finetune 100% (5 steps)" in out.getvalue()
    # the pretraining's 10 s of 60 s planned are done (+ 1/5 of the first 10-s fine-tuning): 20 % 20 s after the first
    # step -> 80 s left (the 15 s of start-up are not extrapolated)
    clock.now = 35.0
    assert abs(progress.fraction_done() - 12 / 60) < 1e-9
    assert abs(progress.eta_seconds() - 20.0 * (48 / 60) / (12 / 60)) < 1e-6
    clock.now = 46.0
    progress.event("a", "finetune 100%", 2, 5, 0.4)
    summary = [line for line in out.getvalue().splitlines() if "progress:" in line]
    assert len(summary) == 1 and "units 0/2 (1 running)" in summary[0] and "left" in summary[0], out.getvalue()
    progress.finish("a")
    assert progress.done_units == 1 and abs(progress.fraction_done() - 30 / 60) < 1e-9
    progress.event("a", "evaluate 100%", 0, 0, None)  # late events of a finished unit change nothing
    assert progress.done_units == 1
    progress.close()
    console.close()
    assert "csi/unet2d on brats: pretrain" in (tmp_path / "run.log").read_text()  # the suite's lines are in the log too


def test_with_a_tty_bars_show_units_stage_step_and_loss():
    term = Terminal()
    console = Console(term, term)
    progress = Progress(console, UNITS, clock=FakeClock())
    progress.event("b", "finetune 25%", 7, 40, 0.1234)
    console.line("[1/2] a line above the bars")
    screen = term.getvalue()
    assert "units 0/2 (1 running)" in screen
    assert "scratch/unet2d on brats: finetune 25% 7/40, loss 0.1234" in screen
    assert "[medssl-bench] [1/2] a line above the bars" in screen
    progress.close()
    assert not console.bars_active


def test_a_terminal_without_a_width_gets_plain_lines():
    """A pseudo-terminal of 0 columns (``script`` under CI) is a TTY where tqdm draws nothing: plain lines there."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as stream:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        assert not Console(stream, stream).is_tty
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        assert Console(stream, stream).is_tty
    os.close(master)


def test_captured_output_goes_to_the_log_and_only_with_verbose_to_the_console(tmp_path, capsys):
    for verbose in (False, True):
        log = tmp_path / f"verbose-{verbose}.log"
        with session(log, verbose=verbose) as console:
            with console.capture():
                print("Ray's own line")
                sys.stderr.write("a Tune box\n")
                console.line("the suite's line")
        out = capsys.readouterr().out
        assert "[medssl-bench] the suite's line" in out
        assert ("Ray's own line" in out) is verbose and ("a Tune box" in out) is verbose
        text = log.read_text()
        assert "Ray's own line" in text and "a Tune box" in text and "the suite's line" in text


def test_format_duration():
    assert format_duration(42.4) == "42 s"
    assert format_duration(185) == "3 min 05 s"
    assert format_duration(7260) == "2 h 01 min"
