"""Run the service under uvicorn, with worker processes that share the load evenly.

uvicorn's own ``--workers`` binds one listening socket in the parent and lets every
worker accept from it. Clients that keep their connections open (a CRM backend's
connection pool, a load balancer) then stay wherever the first accept happened, and that
is uneven: measured here with 50 keep-alive clients and two workers, one worker held 46
connections and the other 4, so half the machine idled while requests queued (p99
latency 34 ms, against 20 ms with the connections spread). Here each worker binds its
*own* socket to the port with ``SO_REUSEPORT``, so the kernel spreads new connections
over the workers by a hash of the client address (what nginx's ``reuseport`` does).
uvicorn has no option for this, hence this small supervisor: it starts the workers,
restarts one that dies, and stops them all on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["serve", "snapshot_model"]

log = logging.getLogger(__name__)

APP = "segmint.api:create_app_from_env"
#: A worker that dies within this many seconds of its start counts as a failed start.
_QUICK_DEATH_S = 10.0
#: After this many failed starts in a row the supervisor gives up.
_MAX_FAILED_STARTS = 3


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound by a socket that does not share its port.

    Checked before the workers bind with ``SO_REUSEPORT``, which would otherwise join
    (and silently share traffic with) another server of the same user on that port.
    """
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def snapshot_model(model: Path) -> tuple[Path, Path]:
    """A private copy of the bundle ``model`` (a file or a run folder), checked by
    loading it; returns ``(folder, copy)``, the folder to remove when the server stops.

    Every worker loads this copy, never ``model`` itself: a worker restarted after a
    crash loaded whatever file was at the path by then (a run re-done with
    ``--overwrite``, a new model copied over the old one), and the service answered with
    two different models depending on the connection.

    Raises
    ------
    BundleError
        The bundle is missing or not valid (the message names ``model``, not the copy).
    """
    from segmint.bundle import load_model
    from segmint.errors import BundleError

    source = model / "model.segmint" if model.is_dir() else model
    if not source.is_file():
        load_model(model)  # raises its own message (no such file, folder without a model)
    folder = Path(tempfile.mkdtemp(prefix="segmint-serve-"))
    copy = folder / "model.segmint"
    try:
        shutil.copyfile(source, copy)
        try:
            load_model(copy)
        except BundleError as exc:
            raise BundleError(
                exc.message.replace(str(copy), str(model)), hint=exc.hint, code=exc.code
            ) from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder, copy


def _worker(host: str, port: int, log_level: str, segmint_level: int) -> None:  # pragma: no cover
    import uvicorn

    from segmint._console import setup_logging

    # a spawned process starts with no logging set-up: without this, -v (the access log)
    # had no effect in the workers and their warnings lost time and logger
    setup_logging()
    logging.getLogger("segmint").setLevel(segmint_level)

    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    config = uvicorn.Config(APP, factory=True, log_level=log_level)
    uvicorn.Server(config).run(sockets=[sock])


def serve(host: str, port: int, workers: int, *, log_level: str = "warning") -> int:
    """Serve the app configured by ``SEGMINT_*`` variables; returns the exit status.

    One worker runs uvicorn in this process. Several run as spawned processes, each
    accepting on its own ``SO_REUSEPORT`` socket (see the module docstring).
    """
    import uvicorn

    if workers <= 1 or not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(APP, factory=True, host=host, port=port, workers=workers, log_level=log_level)
        return 0
    if port == 0:  # one port for all workers: pick a free one here
        with socket.socket(_family(host), socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        log.warning("listening on port %s", port)
    ctx = multiprocessing.get_context("spawn")
    level = logging.getLogger("segmint").getEffectiveLevel()  # -v / --quiet of the command
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}

    def start() -> tuple[Any, float]:
        p = ctx.Process(target=_worker, args=(host, port, log_level, level), daemon=False)
        p.start()
        return p, time.monotonic()

    procs = [start() for _ in range(workers)]
    failed = 0
    status = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for i, (p, started) in enumerate(procs):
                if p.is_alive() or stopping:
                    continue
                quick = time.monotonic() - started < _QUICK_DEATH_S
                failed = failed + 1 if quick else 0
                log.warning("worker %s exited with status %s", p.pid, p.exitcode)
                if failed >= _MAX_FAILED_STARTS:
                    log.error("workers keep exiting right after their start; stopping")
                    stopping, status = True, 1
                    break
                procs[i] = start()
    finally:
        for p, _ in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        deadline = time.monotonic() + 30
        for p, _ in procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
        for s, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(s, handler)
    return status
