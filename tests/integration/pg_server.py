"""A throwaway PostgreSQL cluster for the store's tests: init, start, stop (Debian's binaries).

Terms. A *cluster* is a data directory made by ``initdb`` in a base directory of our own, served by
one ``postgres`` process on 127.0.0.1 at a free port, with its unix socket in the base directory.
Local socket connections are trusted; TCP connections need the random superuser password, which is
written into the returned URL (``postgresql+psycopg://postgres:<pw>@127.0.0.1:<port>/postgres``).
Durability is off (fsync, synchronous_commit): nothing here outlives the test session.

Root may not run ``initdb``/``postgres``; as root the base directory is handed to the ``postgres``
system user (which Debian's package creates) and the binaries run through ``runuser``; that user
must be able to traverse the base directory's parents (a new directory under /tmp is fine; pytest's
``tmp_path`` is not, it lives in a root-only directory).

Binaries: ``$SERVINGPERF_PG_BINDIR`` if set, else the newest ``/usr/lib/postgresql/*/bin``, else
``initdb`` on PATH.

Shell use (scripts/test.sh)::

    eval "$(python tests/integration/pg_server.py start "$dir")"   # exports SERVINGPERF_TEST_PG_URL
    python tests/integration/pg_server.py stop "$dir"
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PG_URL_ENV = "SERVINGPERF_TEST_PG_URL"
_URL_FILE = "url"
_START_TIMEOUT_S = 60


class PgServerError(RuntimeError):
    """The throwaway cluster could not be created, started or stopped."""


@dataclass(frozen=True, slots=True)
class PgCluster:
    base_dir: Path
    bindir: Path

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"


def find_bindir() -> Path:
    """Where ``initdb``, ``pg_ctl`` and ``postgres`` are (see the module docstring)."""
    configured = os.environ.get("SERVINGPERF_PG_BINDIR")
    if configured:
        return Path(configured)
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1]
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PgServerError(
        "PostgreSQL server binaries not found: apt-get install postgresql, or set"
        " SERVINGPERF_PG_BINDIR"
    )


def _as_owner(cmd: list[str]) -> list[str]:
    """Run as the ``postgres`` system user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "postgres", "--", *cmd]
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(_quote(c) for c in cmd)]


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def _run(cmd: list[str], what: str, timeout_s: float = 120) -> None:
    try:
        done = subprocess.run(
            _as_owner(cmd), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PgServerError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        raise PgServerError(f"{what} failed ({done.returncode}): {done.stderr or done.stdout}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_cluster(base_dir: Path) -> PgCluster:
    """Create a new cluster in ``base_dir`` (made if missing; must not hold one already)."""
    cluster = PgCluster(base_dir=base_dir, bindir=find_bindir())
    base_dir.mkdir(parents=True, exist_ok=True)
    if cluster.data_dir.exists():
        raise PgServerError(f"{cluster.data_dir} exists: pick an empty base directory")
    password = secrets.token_hex(16)
    pwfile = base_dir / "pw"
    pwfile.write_text(password + "\n")
    (base_dir / "password").write_text(password)
    if os.geteuid() == 0:
        shutil.chown(base_dir, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    base_dir.chmod(0o700)
    try:
        _run(["test", "-w", str(base_dir)], "checking access")
    except PgServerError as exc:
        raise PgServerError(
            f"the postgres user cannot reach {base_dir}: use a base directory whose parents"
            " it may traverse (e.g. a new directory directly under /tmp)"
        ) from exc
    try:
        _initdb(cluster, pwfile)
    finally:
        pwfile.unlink(missing_ok=True)
    return cluster


def _initdb(cluster: PgCluster, pwfile: Path) -> None:
    _run(
        [
            str(cluster.bindir / "initdb"),
            "-D",
            str(cluster.data_dir),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ],
        "initdb",
    )


def start(cluster: PgCluster, attempts: int = 3) -> str:
    """Start the cluster on a free 127.0.0.1 port; return its SQLAlchemy URL (also kept in a file)."""
    password = (cluster.base_dir / "password").read_text().strip()
    last: PgServerError | None = None
    for _ in range(attempts):
        port = _free_port()
        options = (
            f"-p {port} -k {cluster.base_dir} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=60 -c shared_buffers=32MB"
        )
        try:
            _run(
                [
                    str(cluster.bindir / "pg_ctl"),
                    "-D",
                    str(cluster.data_dir),
                    "-l",
                    str(cluster.log_file),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    str(_START_TIMEOUT_S),
                    "start",
                ],
                "pg_ctl start",
                timeout_s=_START_TIMEOUT_S + 30,
            )
        except PgServerError as exc:  # most likely the port was taken meanwhile
            last = exc
            continue
        url = f"postgresql+psycopg://postgres:{password}@127.0.0.1:{port}/postgres"
        (cluster.base_dir / _URL_FILE).write_text(url)
        return url
    raise PgServerError(f"could not start PostgreSQL in {cluster.base_dir}: {last}")


def stop(cluster: PgCluster) -> None:
    """Stop the cluster (fast shutdown); a cluster that is not running is fine."""
    if not (cluster.data_dir / "postmaster.pid").exists():
        return
    _run(
        [str(cluster.bindir / "pg_ctl"), "-D", str(cluster.data_dir), "-m", "fast", "-w", "stop"],
        "pg_ctl stop",
    )


@contextlib.contextmanager
def running_cluster(base_dir: Path) -> Iterator[str]:
    """A fresh cluster in ``base_dir``, started for the ``with`` body; yields its URL."""
    cluster = init_cluster(base_dir)
    url = start(cluster)
    try:
        yield url
    finally:
        stop(cluster)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: pg_server.py start|stop BASE_DIR", file=sys.stderr)
        return 2
    command, base = argv[0], Path(argv[1]).resolve()
    try:
        if command == "start":
            url = start(init_cluster(base))
            print(f"export {PG_URL_ENV}='{url}'")
        else:
            stop(PgCluster(base_dir=base, bindir=find_bindir()))
    except PgServerError as exc:
        print(f"pg_server: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
