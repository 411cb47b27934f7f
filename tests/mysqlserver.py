"""A throwaway MariaDB server for tests (Debian ``mariadb-server`` package).

``mariadb-install-db`` a data folder in a fresh temporary folder, start ``mariadbd`` on a
free loopback port with its socket and pid file in that folder, create a reader user with
a password, and stop and remove everything on exit. As root the server runs as root
(``--user=root``): the files are in a private temporary folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: How long the server may take to start (it answers in about a second).
START_TIMEOUT = 60.0


def server_bin() -> tuple[Path, Path] | None:
    """``mariadbd`` and ``mariadb-install-db``, or None when MariaDB is not installed."""
    server = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/libexec")
    install = shutil.which("mariadb-install-db")
    return (Path(server), Path(install)) if server and install else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tls_files(folder: Path) -> dict[str, Path]:
    """A test CA, a server certificate it signs for the name ``localhost`` only (not
    127.0.0.1: connecting by address is a name mismatch) with its key, and another CA
    that signed nothing here; made with the ``openssl`` program (EC keys: fast).
    Returns ``{"ca", "cert", "key", "other_ca"}``."""
    folder.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], capture_output=True, check=True)

    for name in ("ca", "other_ca"):
        openssl("req", "-x509", *ec, "-keyout", folder / f"{name}.key", "-out",
                folder / f"{name}.pem", "-days", "2", "-subj", f"/CN=segmint test {name}",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    openssl("req", *ec, "-keyout", folder / "server.key", "-out", folder / "server.csr",
            "-subj", "/CN=localhost")  # fmt: skip
    ext = folder / "server.ext"
    ext.write_text(
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    openssl("x509", "-req", "-in", folder / "server.csr", "-CA", folder / "ca.pem",
            "-CAkey", folder / "ca.key", "-CAcreateserial", "-out", folder / "server.pem",
            "-days", "2", "-extfile", ext)  # fmt: skip
    return {
        "ca": folder / "ca.pem",
        "cert": folder / "server.pem",
        "key": folder / "server.key",
        "other_ca": folder / "other_ca.pem",
    }


@contextmanager
def server(
    user: str = "reader", password: str = "s3cret-for-tests", tls: dict[str, Path] | None = None
) -> Iterator[dict]:
    """Start a server; yields ``{"host", "port", "user", "password", "root_socket"}``:
    ``user`` (with ``password``) may read and write database ``shop`` over TCP; root
    connects through ``root_socket`` without a password (to set up tables). ``tls``
    (from :func:`tls_files`) turns TLS on with that CA, certificate and key."""
    found = server_bin()
    if found is None:
        raise FileNotFoundError("MariaDB server programs (mariadbd, mariadb-install-db) not found")
    mariadbd, install_db = found
    root = Path(tempfile.mkdtemp(prefix="segmint-mariadb-"))
    data, sock, log = root / "data", root / "mysqld.sock", root / "server.log"
    port = _free_port()
    as_user = ["--user=root"] if os.geteuid() == 0 else []
    done = subprocess.run(
        [str(install_db), "--no-defaults", f"--datadir={data}",
         "--auth-root-authentication-method=socket", "--skip-test-db", *as_user],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"mariadb-install-db failed: {done.stderr}{done.stdout}")
    proc = subprocess.Popen(
        [str(mariadbd), "--no-defaults", f"--datadir={data}", f"--socket={sock}",
         f"--pid-file={root / 'mysqld.pid'}", f"--port={port}", "--bind-address=127.0.0.1",
         f"--log-error={log}", "--skip-log-bin", "--innodb-buffer-pool-size=64M",
         "--innodb-log-file-size=16M", "--innodb-flush-log-at-trx-commit=0",
         "--skip-name-resolve", "--max-connections=20", *as_user,
         *([f"--ssl-ca={tls['ca']}", f"--ssl-cert={tls['cert']}", f"--ssl-key={tls['key']}"]
           if tls else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        import pymysql

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                conn = pymysql.connect(unix_socket=str(sock), user="root")
                break
            except pymysql.err.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text()[-2000:] if log.exists() else ""
                    raise RuntimeError(f"mariadbd did not start: {tail}") from None
                time.sleep(0.1)
        with conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE shop CHARACTER SET utf8mb4")
            cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
            cur.execute(f"GRANT ALL ON shop.* TO '{user}'@'%'")
        yield {
            "host": "127.0.0.1",
            "port": port,
            "user": user,
            "password": password,
            "root_socket": str(sock),
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def root_connection(info: dict, database: str = "shop"):  # noqa: ANN201
    """A root connection (Unix socket, autocommit) for setting up tables."""
    import pymysql

    return pymysql.connect(
        unix_socket=info["root_socket"],
        user="root",
        database=database,
        charset="utf8mb4",
        autocommit=True,
        local_infile=False,
    )
