"""A throwaway PostgreSQL server for tests and benchmarks (Debian ``postgresql`` package).

``initdb`` a cluster in a fresh temporary folder, start it with ``pg_ctl`` on a free
loopback port (no Unix socket in a shared place), and remove everything on exit. As root
the server runs as the ``postgres`` system user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def server_bin() -> Path | None:
    """The folder with ``initdb``/``pg_ctl``, or None when PostgreSQL is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _version(path: str) -> int:
    try:
        return int(Path(path).parts[-3])
    except ValueError:
        return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def cluster(user: str = "segmint", password: str | None = None) -> Iterator[str]:
    """Start a server; yields its URL ``postgresql://USER@127.0.0.1:PORT/postgres``.

    With ``password``, TCP connections must authenticate (scram-sha-256) and the URL
    carries no password: give it through PGPASSWORD, a .pgpass file or the URL.
    """
    bindir = server_bin()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL server programs (initdb, pg_ctl) not found")
    root = Path(tempfile.mkdtemp(prefix="segmint-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"
    port = _free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, check=False)
        if done.returncode:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr}{done.stdout}{tail}")

    auth = ["-A", "trust"]
    if password is not None:
        pwfile = root / "pwfile"
        pwfile.write_text(password + "\n")
        if prefix:
            shutil.chown(pwfile, "postgres", "postgres")
        auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
    run(str(bindir / "initdb"), "-D", str(data), *auth, "-U", user, "-E", "UTF8",
        "--no-sync", "--no-instructions")  # fmt: skip
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
    try:
        yield f"postgresql://{user}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


def load_frame(url: str, table: str, frame, *, text: bool = False) -> None:  # noqa: ANN001
    """Create ``table`` from a pandas frame with COPY (typed columns, or all text)."""
    import psycopg
    from psycopg import sql

    kinds = {"i": "bigint", "u": "bigint", "f": "double precision", "b": "boolean",
             "M": "timestamp"}  # fmt: skip
    cols = list(frame.columns)
    types = ["text" if text else kinds.get(frame[c].dtype.kind, "text") for c in cols]
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
        cur.execute(
            sql.SQL("CREATE TABLE {} ({})").format(
                sql.Identifier(table),
                sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t))
                    for c, t in zip(cols, types, strict=True)
                ),
            )
        )
        copy_sql = sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(table))
        with cur.copy(copy_sql) as copy:
            for row in frame.itertuples(index=False, name=None):
                copy.write_row([_cell(v, text) for v in row])


def _cell(value, text: bool):  # noqa: ANN001, ANN202
    """A value COPY can write: None for NA/NaN/NaT, Python scalars, or text."""
    import pandas as pd

    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if text:
        return str(value)
    return value.item() if hasattr(value, "item") else value
