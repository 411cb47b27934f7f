"""Rich consoles, logging set-up and error rendering for the CLI (library code never prints)."""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Callable

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.text import Text

from segmint.errors import SegmintError

__all__ = [
    "err_console",
    "esc",
    "out_console",
    "render_error",
    "setup_logging",
    "status_progress",
]


class _Console(Console):
    """A rich console that reports a closed pipe as :class:`BrokenPipeError`.

    rich's own answer to it is ``SystemExit(1)``, which the CLI could not tell from a
    failure; the CLI ends a broken pipe quietly with its own status (``cli.main``).
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True  # nothing more to write to a reader that went away
        raise BrokenPipeError(errno.EPIPE, "the reader of the output went away")


# Markup is off by default: file names, column names, values and segment names are the
# user's text, and "[/]" or "[b]" in them would be read as rich tags (an error or lost
# text). The few styled lines pass markup=True and escape what they interpolate (esc).
out_console = _Console(soft_wrap=False, markup=False)
# on a terminal, messages wrap to its width; into a file or a log collector each stays
# one line (wrapped at 80 columns and padded, a warning took four lines of a log file)
err_console = _Console(stderr=True, markup=False, soft_wrap=not sys.stderr.isatty())


def esc(value: object) -> str:
    """The text of value with rich markup escaped, for a line printed with markup=True."""
    return escape(str(value))


class _LineFormatter(logging.Formatter):
    """One line per record for log files: time, level, logger and message; the API's
    access log stays the bare JSON line the README promises."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if record.name == "segmint.api.access":
            return record.getMessage()
        return " ".join(super().format(record).splitlines())


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Send segmint's log records to stderr (warnings only when quiet): through rich on a
    terminal, as one plain line each (with time and logger) into a file or a pipe."""
    level = (
        logging.WARNING
        if quiet
        else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    )
    root = logging.getLogger("segmint")
    handler: logging.Handler
    if sys.stderr.isatty():
        handler = RichHandler(console=err_console, show_path=False, show_time=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_LineFormatter())
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def render_error(exc: SegmintError) -> None:
    """One red line with the message, then the hint; no traceback."""
    err_console.print(
        f"[bold red]Error:[/] {esc(exc.message)}", highlight=False, markup=True, soft_wrap=True
    )
    if exc.hint:
        err_console.print(
            f"[yellow]Hint:[/] {esc(exc.hint)}", highlight=False, markup=True, soft_wrap=True
        )


#: The signal (SIGINT or SIGTERM) that interrupted the running command, recorded by the
#: CLI's handler (None: not interrupted).
interrupted: dict[str, int | None] = {"signal": None}


def stop_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` when an interruption was recorded but did not stop the
    work: a library can swallow the ``KeyboardInterrupt`` the handler raised (seen once
    in a Spark job, whose run then went on to its end and exit 0). Called at every stage
    boundary, so such a Ctrl-C still ends the command there, in the usual orderly way."""
    if interrupted["signal"] is not None:
        raise KeyboardInterrupt


def status_progress(quiet: bool = False) -> tuple[Callable[[str], None], Callable[[], None]]:
    """A progress callback showing the current stage on stderr, and a function to stop it.
    Each call first checks for an interruption a library swallowed
    (:func:`stop_if_interrupted`)."""
    if quiet or not sys.stderr.isatty():

        def log(stage: str) -> None:
            stop_if_interrupted()
            logging.getLogger("segmint").info(stage)

        return log, (lambda: None)
    # Text, not str: a spinner reads a str as markup whatever the console says, and a
    # stage names the user's files ("writing out[1].csv")
    status = err_console.status(Text("starting"))
    status.start()

    def show(stage: str) -> None:
        stop_if_interrupted()
        status.update(Text(stage))

    return show, status.stop
