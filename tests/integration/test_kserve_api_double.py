"""The Kubernetes API double behaves as the real API server does where our client relies on it
(the gaps found in kmock 0.8 included): 201 on create, server-set metadata, watch=True, trailing
slashes, list kinds, PUT and merge patch, label selectors, watches from a resourceVersion, 410
after compaction, bearer-token authentication, CRD schema validation; and the model ids the fake
ingress serves per InferenceService, as a vLLM runtime would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes.kube_api import (
    DEFAULT_TOKEN,
    FakeKubeApiServer,
    parse_selector,
    served_model_ids,
)

ISVCS = "/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices"
AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}


def isvc(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "predictor": {"model": {"modelFormat": {"name": "pytorch"}, "storageUri": "s3://m"}}
        },
    }


@pytest.fixture
async def double() -> AsyncIterator[tuple[FakeKubeApiServer, aiohttp.ClientSession]]:
    async with (
        FakeKubeApiServer(bookmark_interval_s=0.2) as server,
        aiohttp.ClientSession(server.url, headers=AUTH) as session,
    ):
        async with session.post("/api/v1/namespaces", json={"metadata": {"name": "ns"}}) as r:
            assert r.status == 201
        yield server, session


async def call(
    session: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    async with session.request(method, path, **kwargs) as response:
        return response.status, await response.json(content_type=None)


async def read_lines(response: aiohttp.ClientResponse, count: int) -> list[dict[str, Any]]:
    lines = []
    for _ in range(count):
        raw = await asyncio.wait_for(response.content.readline(), 5)
        lines.append(json.loads(raw))
    return lines


async def test_create_sets_server_metadata_and_answers_201(double: Any) -> None:
    _server, session = double
    status, created = await call(session, "POST", ISVCS.format(ns="ns"), json=isvc("a"))
    assert status == 201
    meta = created["metadata"]
    assert meta["namespace"] == "ns"
    assert meta["uid"]
    assert meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 1000
    assert meta["generation"] == 1
    status, again = await call(session, "POST", ISVCS.format(ns="ns"), json=isvc("a"))
    assert (status, again["reason"]) == (409, "AlreadyExists")
    status, missing = await call(session, "POST", ISVCS.format(ns="nope"), json=isvc("b"))
    assert (status, missing["reason"]) == (404, "NotFound")
    status, got = await call(session, "GET", ISVCS.format(ns="ns") + "/a/")  # trailing slash
    assert status == 200
    assert got == created


async def test_schema_validation_and_authentication(double: Any) -> None:
    server, session = double
    bad = isvc("bad")
    bad["spec"]["predictor"]["model"]["storageURI"] = "typo"
    status, body = await call(session, "POST", ISVCS.format(ns="ns"), json=bad)
    assert status == 422
    assert "storageURI" in body["message"]
    async with aiohttp.ClientSession(server.url) as anonymous:
        status, body = await call(anonymous, "GET", ISVCS.format(ns="ns"))
    assert (status, body["reason"]) == (401, "Unauthorized")


async def test_list_and_label_selectors(double: Any) -> None:
    _, session = double
    for name, labels in [("a", {"run": "1", "tier": "x"}), ("b", {"run": "2"}), ("c", {})]:
        await call(session, "POST", ISVCS.format(ns="ns"), json=isvc(name, labels))
    status, listed = await call(session, "GET", "/apis/serving.kserve.io/v1beta1/inferenceservices")
    assert status == 200
    assert (listed["apiVersion"], listed["kind"]) == (
        "serving.kserve.io/v1beta1",
        "InferenceServiceList",
    )
    assert int(listed["metadata"]["resourceVersion"]) >= 1003

    async def names(selector: str) -> list[str]:
        _, body = await call(
            session, "GET", ISVCS.format(ns="ns"), params={"labelSelector": selector}
        )
        return sorted(item["metadata"]["name"] for item in body["items"])

    assert await names("run=1") == ["a"]
    assert await names("run in (1,2)") == ["a", "b"]
    assert await names("run,tier!=y") == ["a", "b"]  # != also matches a missing key
    assert await names("run,tier") == ["a"]
    assert await names("!run") == ["c"]
    assert await names("run notin (1)") == ["b", "c"]
    with pytest.raises(ValueError, match="unparseable"):
        parse_selector("run=(")


async def test_replace_patch_and_status_subresource(double: Any) -> None:
    _, session = double
    path = ISVCS.format(ns="ns") + "/a"
    _, created = await call(session, "POST", ISVCS.format(ns="ns"), json=isvc("a"))
    stale = dict(created, metadata={**created["metadata"], "resourceVersion": "1"})
    status, body = await call(session, "PUT", path, json=stale)
    assert (status, body["reason"]) == (409, "Conflict")
    changed = json.loads(json.dumps(created))
    changed["spec"]["predictor"]["minReplicas"] = 2
    changed["status"] = {"url": "http://ignored"}
    status, replaced = await call(session, "PUT", path, json=changed)
    assert status == 200
    assert replaced["metadata"]["generation"] == 2
    assert "status" not in replaced  # main-resource writes leave status alone
    status, patched = await call(
        session,
        "PATCH",
        path + "/status",
        data=json.dumps({"status": {"url": "http://a.example.com"}}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert status == 200
    assert patched["status"] == {"url": "http://a.example.com"}
    assert patched["metadata"]["generation"] == 2
    status, body = await call(
        session,
        "PATCH",
        path,
        json={"spec": {}},
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert status == 415


async def test_watch_from_a_version_replays_later_events_and_bookmarks(double: Any) -> None:
    _, session = double
    _, first = await call(session, "POST", ISVCS.format(ns="ns"), json=isvc("a"))
    since = first["metadata"]["resourceVersion"]
    await call(session, "POST", ISVCS.format(ns="ns"), json=isvc("b", {"keep": "yes"}))
    await call(session, "POST", ISVCS.format(ns="ns"), json=isvc("c"))
    params = {
        "watch": "True",  # any case, as the real server's ParseBool
        "resourceVersion": since,
        "labelSelector": "keep",
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "5",
    }
    async with session.get(ISVCS.format(ns="ns"), params=params) as response:
        assert response.status == 200
        added, bookmark = await read_lines(response, 2)
    assert (added["type"], added["object"]["metadata"]["name"]) == ("ADDED", "b")
    assert bookmark["type"] == "BOOKMARK"
    assert int(bookmark["object"]["metadata"]["resourceVersion"]) >= 1004


@pytest.mark.parametrize("as_http", [False, True], ids=["error-event", "http-410"])
async def test_watch_from_a_compacted_version_is_gone(double: Any, as_http: bool) -> None:
    server, session = double
    _, first = await call(session, "POST", ISVCS.format(ns="ns"), json=isvc("a"))
    await call(session, "POST", ISVCS.format(ns="ns"), json=isvc("b"))
    server.store.compact()
    server.gone_as_http = as_http
    params = {"watch": "true", "resourceVersion": first["metadata"]["resourceVersion"]}
    async with session.get(ISVCS.format(ns="ns"), params=params) as response:
        if as_http:
            assert response.status == 410
            body = await response.json()
        else:
            assert response.status == 200
            (event,) = await read_lines(response, 1)
            assert event["type"] == "ERROR"
            body = event["object"]
    assert (body["code"], body["reason"]) == (410, "Expired")


async def test_deleting_a_namespace_deletes_its_contents(double: Any) -> None:
    server, session = double
    await call(session, "POST", ISVCS.format(ns="ns"), json=isvc("a"))
    status, body = await call(session, "DELETE", "/api/v1/namespaces/ns")
    assert status == 200
    assert body["status"]["phase"] == "Terminating"
    status, _ = await call(session, "GET", ISVCS.format(ns="ns") + "/a")
    assert status == 404
    status, _ = await call(session, "GET", "/api/v1/namespaces/ns")
    assert status == 404
    assert server.store.counts["http.POST"] == 2


@pytest.mark.parametrize(
    ("args", "ids"),
    [
        (None, ("m",)),
        (["--max-model-len=512"], ("m",)),
        (["--served-model-name=flan"], ("flan",)),
        (["--served-model-name", "a", "b", "--dtype=half"], ("a", "b")),
        (["--served-model-name=a", "--served-model-name=b"], ("b",)),
    ],
)
def test_the_ingress_serves_the_name_a_vllm_runtime_would(
    args: list[str] | None, ids: tuple[str, ...]
) -> None:
    obj = isvc("m")
    if args is not None:
        obj["spec"]["predictor"]["model"]["args"] = args
    assert served_model_ids(obj) == ids
