"""The store's connection to its database: URL handling, transactions, retries, error translation.

Terms. A *store location* is a file path (SQLite, the default) or a URL: ``sqlite:///path``,
``postgresql+psycopg://user:pass@host:port/db`` (``postgresql://`` and ``postgres://`` mean the
same; psycopg 3 is the driver). A *write transaction* is one that may write: on SQLite it starts with
``BEGIN IMMEDIATE``, taking the database's write lock up front, so two writers queue on the busy
timeout instead of deadlocking on a lock upgrade; reads use a plain ``BEGIN`` and, in WAL mode, never
block or get blocked. A *transient* error is one a retry can cure: SQLite's "database is locked"
after the busy timeout, PostgreSQL's serialization failure or deadlock. Every other database error
becomes a :class:`~servingperf.errors.StoreError` naming the store (password hidden).
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from servingperf.errors import StoreError

T = TypeVar("T")

# Execution option marking a connection whose next transaction writes (see module docstring).
WRITE_OPTION = "servingperf_write"

SQLITE_BUSY_TIMEOUT_S = 10.0
PG_CONNECT_TIMEOUT_S = 10
# A write is tried at most this many times; between tries a jittered, growing pause (<= 2 s).
MAX_WRITE_ATTEMPTS = 6

_PG_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock
_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "database is busy")


def store_url(location: str) -> URL:
    """The SQLAlchemy URL of a store location; a location without ``://`` is a SQLite file path."""
    if "://" not in location:
        path = Path(location).expanduser()
        return URL.create("sqlite+pysqlite", database=str(path))
    try:
        url = make_url(location)
    except ArgumentError as exc:
        raise StoreError(f"store URL {location!r} is malformed: {exc}") from exc
    backend, _, driver = url.drivername.partition("+")
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        return url.set(drivername="sqlite+pysqlite")
    raise StoreError(
        f"store URL scheme {url.drivername!r} is not supported: use a file path,"
        " sqlite:///path or postgresql+psycopg://user@host:port/database"
    )


def describe(url: URL) -> str:
    """The store as it may appear in messages: a SQLite file's path, else the URL without password."""
    if url.get_backend_name() == "sqlite" and url.database:
        return url.database
    return url.render_as_string(hide_password=True)


def create_store_engine(location: str) -> Engine:
    """An engine for the store at ``location``, configured for concurrent writers.

    SQLite: the parent directory is created; WAL journal, foreign keys on, busy timeout, and our own
    BEGIN (see the module docstring). PostgreSQL: a connect timeout, pre-ping on checkout.
    """
    url = store_url(location)
    try:
        if url.get_backend_name() == "sqlite":
            return _sqlite_engine(url)
        engine = create_engine(
            url,
            connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
            pool_pre_ping=True,
            pool_size=2,
            max_overflow=2,
        )
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise StoreError(
            f"store {describe(url)}: PostgreSQL needs psycopg 3: pip install 'servingperf[postgres]'"
        ) from exc
    except (ArgumentError, SQLAlchemyError) as exc:
        raise StoreError(f"store {describe(url)}: {exc}") from exc
    return engine


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database in ("", ":memory:"):
        raise StoreError("an in-memory SQLite store would lose every run: give a file path")
    path = Path(database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"store {path}: cannot create its directory: {exc.strerror}") from exc
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            _use_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; safe in WAL
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        writes = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

    return engine


def _use_wal(cursor: Any) -> None:
    """Put the database in WAL mode (persistent in the file: done once, by its first writer).

    Switching needs an exclusive lock, and SQLite may answer "database is locked" at once,
    without its busy handler, while another process opens the same new file: seen with two
    writers starting together. Retried with backoff for at most the busy timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    delay = 0.01
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay * (1 + random.random()))
        delay = min(delay * 2, 0.5)


def is_transient(exc: DBAPIError) -> bool:
    """True if retrying the whole transaction may succeed (see the module docstring)."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in _PG_TRANSIENT_SQLSTATES:
        return True
    message = str(orig).lower()
    return type(orig).__module__.startswith("sqlite3") and any(
        text in message for text in _SQLITE_TRANSIENT
    )


def _translate(exc: SQLAlchemyError, url: URL, what: str) -> StoreError:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    detail = lines[0] if lines else type(cause).__name__
    return StoreError(f"store {describe(url)}: {what} failed: {detail}")


def run_in_transaction(
    engine: Engine, fn: Callable[[Connection], T], *, what: str, writes: bool
) -> T:
    """Run ``fn`` in one transaction, committed on return and rolled back on error.

    Writes are retried on transient errors (bounded: ``MAX_WRITE_ATTEMPTS`` tries); ``fn`` must
    therefore be safe to run again from the start. Database errors become StoreError.
    """
    attempts = MAX_WRITE_ATTEMPTS if writes else 1
    for attempt in range(1, attempts + 1):
        try:
            with engine.connect() as conn:
                if writes:
                    conn.execution_options(**{WRITE_OPTION: True})
                with conn.begin():
                    return fn(conn)
        except DBAPIError as exc:
            if attempt < attempts and is_transient(exc):
                time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
                continue
            raise _translate(exc, engine.url, what) from exc
        except SQLAlchemyError as exc:
            raise _translate(exc, engine.url, what) from exc
    raise AssertionError("unreachable: the last attempt returns or raises")
