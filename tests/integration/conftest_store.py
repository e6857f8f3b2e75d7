"""Fixtures and a writer process for the store's tests, on SQLite and on PostgreSQL.

Import the fixtures into a test module (``from tests.integration.conftest_store import store_location``). The
PostgreSQL side uses the server named by ``SERVINGPERF_TEST_PG_URL`` (scripts/test.sh starts one
with ``pg_server.py``); each test gets its own schema, dropped afterwards. Without that variable the
PostgreSQL tests fail when ``CI=true`` and are skipped, loudly, elsewhere.

Run as a script, this module is one concurrent writer:
``python conftest_store.py write LOCATION PREFIX COUNT BARRIER_DIR`` (see :func:`write_runs`).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from servingperf.model.metrics import Better
from servingperf.results.store import KpiRow, StoredRun, open_store

PG_URL_ENV = "SERVINGPERF_TEST_PG_URL"
SHARED_RUN = "shared-run"
KPI_NAMES = ("ttft_s", "tpot_s", "ntpot_s", "e2e_s", "output_throughput_tps")
_T0 = datetime(2025, 1, 1, tzinfo=UTC)


def pg_base_url() -> str:
    """The test server's URL; fails under CI and skips elsewhere when it is not configured."""
    url = os.environ.get(PG_URL_ENV)
    if url:
        return url
    message = (
        f"{PG_URL_ENV} is not set, so the store was NOT tested against PostgreSQL; scripts/test.sh"
        " starts a server (python tests/integration/pg_server.py start DIR) and sets it"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A location for a new, empty store: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield str(tmp_path / "store.db")
        return
    base = make_url(pg_base_url())
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def make_run(
    run_id: str,
    minutes: float = 0.0,
    *,
    labels: dict[str, str] | None = None,
    scenario: str = "chat",
    platform: str = "local",
) -> StoredRun:
    return StoredRun(
        run_id=run_id,
        scenario=scenario,
        kind="single-model",
        started_at=_T0 + timedelta(minutes=minutes),
        ended_at=_T0 + timedelta(minutes=minutes + 5),
        status="complete",
        run_dir=f"/runs/{run_id}",
        platform=platform,
        hardware="cpu-2c",
        labels=labels or {},
    )


def make_kpis(run_id: str, value: float, instances: int = 2) -> list[KpiRow]:
    return [
        KpiRow(
            run_id=run_id,
            instance=f"m-{i}",
            model="flan-t5-small",
            phase="steady",
            name=name,
            value=value + i + j / 10,
            unit="tokens/s" if name.endswith("_tps") else "s",
            better=Better.HIGHER if name.endswith("_tps") else Better.LOWER,
            n=100 + j,
        )
        for i in range(instances)
        for j, name in enumerate(KPI_NAMES)
    ]


def write_runs(location: str, prefix: str, count: int, barrier: Path) -> None:
    """One writer: open the store, wait (bounded) for the other writer, then write ``count`` runs
    ``{prefix}-{i}``; every 5th step it also rewrites SHARED_RUN, all its KPIs set to
    ``writer_tag(prefix, i)``, so a reader can tell whether one writer's set survived whole."""
    (barrier / f"ready-{prefix}").touch()
    deadline = time.monotonic() + 60
    while len(list(barrier.glob("ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    with open_store(location) as store:
        for i in range(count):
            run_id = f"{prefix}-{i}"
            labels = {"release": f"1.{i % 5}.0", "writer": prefix}
            store.record_run(make_run(run_id, i, labels=labels), make_kpis(run_id, float(i)))
            if i % 5 == 0:
                tag = writer_tag(prefix, i)
                store.record_run(
                    make_run(SHARED_RUN, labels={"writer": prefix}),
                    [
                        KpiRow(SHARED_RUN, "m-0", "m", "steady", name, tag, "s", Better.LOWER, i)
                        for name in KPI_NAMES
                    ],
                )


def writer_tag(prefix: str, step: int) -> float:
    """What a writer puts in SHARED_RUN's KPIs: a number naming the writer and the step."""
    return float(sum(map(ord, prefix)) * 1000 + step)


def main(argv: list[str]) -> int:
    if len(argv) != 5 or argv[0] != "write":
        print("usage: conftest_store.py write LOCATION PREFIX COUNT BARRIER_DIR", file=sys.stderr)
        return 2
    _, location, prefix, count, barrier = argv
    write_runs(location, prefix, int(count), Path(barrier))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
