"""Emulated devices on the local platform: instances placed on one device share one server process
(one batching engine), which lives until the last of them is deleted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from servingperf.errors import DeployError
from servingperf.model.specs import EmulatorSpec, ModelSpec
from servingperf.platforms.base import InstanceRequest
from servingperf.platforms.local import LocalPlatform, _server

pytestmark = pytest.mark.slow


def _request(
    name: str, device: str | None, ids: tuple[str, ...], **emulator: object
) -> InstanceRequest:
    settings: dict[str, object] = {"profile": "flan-t5-small", "load_time_s": 0, "device": device}
    settings.update(emulator)
    model = ModelSpec(name=name, model_id=name, emulator=EmulatorSpec.model_validate(settings))
    return InstanceRequest(name=name, namespace="ns", model=model, device_model_ids=ids)


def _platform(tmp_path: Path) -> LocalPlatform:
    return LocalPlatform(
        tmp_path / "instances", time.monotonic(), state_dir=tmp_path / "state", reap_on_start=False
    )


async def _models(url: str) -> set[str]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/v1/models") as response:
        body = await response.json()
    return {item["id"] for item in body["data"]}


async def test_instances_of_one_device_share_one_server_until_the_last_goes(
    tmp_path: Path,
) -> None:
    platform = _platform(tmp_path)
    ids = ("a", "b")
    try:
        a, b = await asyncio.gather(
            platform.deploy(_request("a", "gpu0", ids)), platform.deploy(_request("b", "gpu0", ids))
        )
        alone = await platform.deploy(_request("c", "gpu1", ()))
        for instance in (a, b, alone):
            await platform.wait_ready(instance, 30)
        assert a.url == b.url != alone.url
        assert _server(a).process.pid == _server(b).process.pid  # deployed at once: one server
        assert await _models(a.url or "") == {"a", "b"}
        assert await _models(alone.url or "") == {"c"}
        assert sorted(p.name for p in (tmp_path / "instances" / "ns").iterdir()) == [
            "c",
            "device-gpu0",
        ]
        await platform.delete(a)
        assert a.record.status == "deleted"
        assert _server(b).process.poll() is None  # b still uses it
        assert await _models(b.url or "") == {"a", "b"}
        await platform.delete(b)
        assert _server(b).process.returncode is not None
        again = await platform.deploy(_request("a", "gpu0", ids))  # the device starts afresh
        assert _server(again).process.pid != _server(b).process.pid
    finally:
        await platform.close()
    assert all(_server(i).process.returncode is not None for i in platform.instances)


async def test_instances_of_a_device_must_agree_on_its_server(tmp_path: Path) -> None:
    platform = _platform(tmp_path)
    try:
        await platform.deploy(_request("a", "gpu0", ("a", "b")))
        with pytest.raises(DeployError, match="emulator settings differ"):
            await platform.deploy(_request("b", "gpu0", ("a", "b"), profile="bloom-560m"))
        with pytest.raises(DeployError, match="not served on device"):
            await platform.deploy(_request("x", "gpu0", ("x",)))
    finally:
        await platform.close()
