"""The results store against real SQLite files and a real PostgreSQL server."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, inspect, text

from servingperf.errors import StoreError
from servingperf.model.metrics import Better
from servingperf.results.store import KpiRow, Store, StoredRun, open_store
from servingperf.results.store_engine import create_store_engine
from servingperf.results.store_migrations import MIGRATIONS, Migration, upgrade
from servingperf.results.store_schema import METADATA, SCHEMA_VERSION
from tests.integration.conftest_store import (  # noqa: F401  (store_location is a fixture)
    KPI_NAMES,
    SHARED_RUN,
    make_kpis,
    make_run,
    store_location,
    writer_tag,
)

HERE = Path(__file__).parent


@pytest.fixture
def store(store_location: str) -> Iterator[Store]:  # noqa: F811
    with open_store(store_location) as s:
        yield s


def test_round_trip(store: Store) -> None:
    run = make_run("r1", labels={"release": "2.5.0", "commit": "abc123"})
    kpis = [
        *make_kpis("r1", 0.5),
        KpiRow("r1", "m-0", "flan", "warmup", "ttft_s", math.nan, "s", Better.LOWER, 0),
        KpiRow("r1", "m-0", "flan", "warmup", "tpot_s", math.inf, "s", Better.LOWER, 3),
    ]
    store.record_run(run, kpis)
    assert store.get_run("r1") == run
    assert store.get_run("missing") is None
    (back,) = store.runs()
    assert back.started_at.tzinfo is not None
    assert back.started_at == run.started_at
    got = store.kpis(["r1"])
    assert len(got) == len(kpis)
    by_key = {(k.instance, k.phase, k.name): k for k in got}
    assert math.isnan(by_key[("m-0", "warmup", "ttft_s")].value)
    assert by_key[("m-0", "warmup", "tpot_s")].value == math.inf
    for k in make_kpis("r1", 0.5):
        assert by_key[(k.instance, k.phase, k.name)] == k


def test_recording_a_run_again_replaces_it(store: Store) -> None:
    store.record_run(make_run("r1", labels={"release": "2.5.0"}), make_kpis("r1", 1.0))
    rerun = make_run("r1", 30, labels={"release": "2.6.0"})
    store.record_run(rerun, make_kpis("r1", 9.0, instances=1))
    assert store.runs() == [rerun]
    assert store.runs({"release": "2.5.0"}) == []
    assert [r.value for r in store.releases()] == ["2.6.0"]
    assert store.kpis(["r1"]) == sorted(
        make_kpis("r1", 9.0, instances=1), key=lambda k: (k.instance, k.phase, k.name)
    )


def test_filters_order_and_releases(store: Store) -> None:
    history = [("2.9.0", 0), ("2.10.0", 10), ("2.10.0", 20), ("2.11.0", 30)]
    for i, (release, minutes) in enumerate(history):
        labels = {"release": release, "gpu": "a100" if i % 2 else "h100"}
        store.record_run(make_run(f"r{i}", minutes, labels=labels), make_kpis(f"r{i}", i))
    store.record_run(
        make_run("other", 40, labels={"release": "2.9.0"}, scenario="batch", platform="kserve"),
        [],
    )
    assert [r.run_id for r in store.runs()] == ["other", "r3", "r2", "r1", "r0"]
    assert [r.run_id for r in store.runs(limit=2)] == ["other", "r3"]
    assert [r.run_id for r in store.runs({"release": "2.10.0"})] == ["r2", "r1"]
    assert [r.run_id for r in store.runs({"release": "2.10.0", "gpu": "a100"})] == ["r1"]
    assert [r.run_id for r in store.runs({"release": "2.9.0"}, scenario="chat")] == ["r0"]
    assert [r.run_id for r in store.runs(platform="kserve")] == ["other"]
    assert store.runs({"release": "9.9.9"}) == []
    with pytest.raises(ValueError, match="limit"):
        store.runs(limit=0)

    releases = store.releases()
    assert [(r.value, r.runs) for r in releases] == [("2.9.0", 2), ("2.10.0", 2), ("2.11.0", 1)]
    assert releases[1].first_started_at == make_run("x", 10).started_at
    assert releases[1].last_started_at == make_run("x", 20).started_at
    assert [r.value for r in store.releases(scenario="batch")] == ["2.9.0"]
    assert [r.value for r in store.releases(filters={"gpu": "a100"})] == ["2.10.0", "2.11.0"]
    assert [r.value for r in store.releases("gpu")] == ["h100", "a100"]


def test_kpis_order_and_selection(store: Store) -> None:
    for i in range(3):
        store.record_run(make_run(f"r{i}", i), make_kpis(f"r{i}", i))
    ids = ["r2", "r0", *[f"absent-{i}" for i in range(600)], "r1"]
    rows = store.kpis(ids)
    assert [r.run_id for r in rows[:: len(KPI_NAMES) * 2]] == ["r2", "r0", "r1"]
    only = store.kpis(["r0", "r1"], names=["tpot_s"])
    assert {(r.run_id, r.instance, r.name) for r in only} == {
        (run, inst, "tpot_s") for run in ("r0", "r1") for inst in ("m-0", "m-1")
    }
    assert store.kpis([]) == []


def test_invalid_runs_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="run_id"):
        store.record_run(make_run("r1"), make_kpis("r2", 1.0))
    with pytest.raises(ValueError, match="twice"):
        store.record_run(make_run("r1"), make_kpis("r1", 1.0) * 2)
    with pytest.raises(ValueError, match="naive"):
        StoredRun("r", "s", "k", datetime(2025, 1, 1), "complete", "/d", "local", "cpu")
    with pytest.raises(ValueError, match="status"):
        StoredRun("r", "s", "k", datetime.now(UTC), "running", "/d", "local", "cpu")
    with pytest.raises(ValueError, match="label key"):
        make_run("r", labels={"bad key": "x"})
    assert store.runs() == []


def test_migrated_schema_matches_the_current_one(store: Store, store_location: str) -> None:  # noqa: F811
    assert store.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
    engine = create_store_engine(store_location)
    try:
        insp = inspect(engine)
        for table in METADATA.sorted_tables:
            columns = {c["name"]: c["nullable"] for c in insp.get_columns(table.name)}
            assert columns == {c.name: c.nullable for c in table.columns}, table.name
            indexes = {i["name"] for i in insp.get_indexes(table.name)}
            assert indexes >= {i.name for i in table.indexes}, table.name
            pk = insp.get_pk_constraint(table.name)["constrained_columns"]
            assert pk == [c.name for c in table.primary_key.columns], table.name
    finally:
        engine.dispose()


def test_step_by_step_migration_and_newer_store_refused(store_location: str) -> None:  # noqa: F811
    with open_store(store_location) as store:
        store.record_run(make_run("old", labels={"release": "1.0"}), make_kpis("old", 1.0))

    def add_comment(conn: Connection) -> None:
        conn.execute(text("ALTER TABLE runs ADD COLUMN comment_v2 TEXT"))

    engine = create_store_engine(store_location)
    try:
        step = len(MIGRATIONS) + 1  # a next version, after every shipped one
        v2 = [*MIGRATIONS, Migration(step, "add runs.comment_v2", add_comment)]
        assert upgrade(engine, v2) == step
        assert upgrade(engine, v2) == step  # nothing left to do
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version FROM schema_version ORDER BY 1")).all()
        assert [v for (v,) in versions] == list(range(1, step + 1))
        assert "comment_v2" in {c["name"] for c in inspect(engine).get_columns("runs")}
    finally:
        engine.dispose()
    newer = rf"schema version {step} is newer .*\({step - 1}\); upgrade servingperf"
    with pytest.raises(StoreError, match=newer):
        open_store(store_location)


def test_not_a_servingperf_store(store_location: str) -> None:  # noqa: F811
    engine = create_store_engine(store_location)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE runs (id INTEGER)"))
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match="not a servingperf store"):
        open_store(store_location)


def test_concurrent_writers_lose_nothing(store_location: str, tmp_path: Path) -> None:  # noqa: F811
    """Two processes open the same new store at once (racing on its creation), then write 50 runs
    each, and both keep rewriting one shared run."""
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "conftest_store.py"),
                "write",
                store_location,
                p,
                "50",
                str(barrier),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in ("w1", "w2")
    ]
    outputs = []
    try:
        for w in writers:
            outputs.append(w.communicate(timeout=240))
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.wait()
    for w, (_, err) in zip(writers, outputs, strict=True):
        assert w.returncode == 0, err

    with open_store(store_location) as store:
        runs = store.runs()
        ids = {r.run_id for r in runs}
        expected = {f"{p}-{i}" for p in ("w1", "w2") for i in range(50)} | {SHARED_RUN}
        assert ids == expected
        rows = store.kpis(sorted(ids - {SHARED_RUN}))
        assert len(rows) == 100 * 2 * len(KPI_NAMES)
        shared = store.kpis([SHARED_RUN])
        # the shared run holds exactly one writer's complete, last-written set
        assert len(shared) == len(KPI_NAMES)
        assert len({r.value for r in shared}) == 1
        writer = store.get_run(SHARED_RUN)
        assert writer is not None
        assert shared[0].value == writer_tag(writer.labels["writer"], shared[0].n)
        assert shared[0].n == 45  # each writer's last rewrite is at step 45
        assert [r.value for r in store.releases()] == [f"1.{i}.0" for i in range(5)]


def test_store_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not supported"):
        open_store("mysql://user@localhost/db")
    with pytest.raises(StoreError, match="in-memory"):
        open_store("sqlite://")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database, just some bytes" * 200)
    with pytest.raises(StoreError, match=r"garbage\.db"):
        open_store(str(garbage))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError, match=f"127.0.0.1:{port}") as info:
        open_store(f"postgresql://someone:s3cret-pw@127.0.0.1:{port}/db")
    assert "s3cret-pw" not in str(info.value)


def test_sqlite_url_and_path_are_the_same_store(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "store.db"
    with open_store(str(path)) as store:
        store.record_run(make_run("r1"), [])
    with open_store(f"sqlite:///{path}") as store:
        assert [r.run_id for r in store.runs()] == ["r1"]
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()


def test_datetimes_are_normalised_to_utc(store: Store) -> None:
    utc = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    local = utc.astimezone(timezone(timedelta(hours=2)))
    store.record_run(replace(make_run("r1"), started_at=local), [])
    back = store.get_run("r1")
    assert back is not None
    assert back.started_at == utc
    assert back.started_at.utcoffset() == timedelta(0)
