"""A headless Chromium driven over the DevTools protocol: the one client every browser test uses.

A page is opened with the network off (``Network.emulateNetworkConditions`` offline, plus a proxy
that goes nowhere), and everything it does is recorded (:class:`PageLog`): console errors, uncaught
exceptions, log errors, every network request it tries, every JavaScript dialog (a hostile string
must never execute). Pages built by servingperf set ``document.body.dataset.chartsRendered`` (and
``chartsFailed``) once their charts are drawn, and each chart's element carries ``data-marks``,
the number of data marks drawn; :func:`open_page` waits for that, then takes a full-page
screenshot.

Chromium is Debian's package (``apt-get install chromium``); without it :func:`chromium_binary`
skips the test, except when ``CI=true``, where a missing browser is a failure. The client is the
smallest that does the job: one websocket to the browser, one page session (flat mode), no third
party beyond aiohttp.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

ARTIFACTS = Path(
    os.environ.get(
        "SERVINGPERF_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"
    )
)
STARTUP_S = 30.0
RENDER_S = 60.0
CALL_S = 30.0


def chromium_binary() -> str:
    """The Chromium to use, or skip (fail under CI=true) with the reason."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    reason = (
        "headless Chromium not found on PATH (install Debian's package: apt-get install chromium)"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI=true requires the browser test to run")
    pytest.skip(reason)


@dataclass
class PageLog:
    """What the page did, as reported by DevTools events."""

    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def note(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args", [])
            self.console_errors.append(
                " ".join(str(a.get("value", a.get("description", ""))) for a in args)
            )
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.exceptions.append(
                str(details.get("exception", {}).get("description") or details.get("text"))
            )
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.log_errors.append(
                f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}"
            )
        elif method == "Network.requestWillBeSent":
            self.requests.append(str(params.get("request", {}).get("url")))
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append(str(params.get("message")))


class DevTools:
    """One page session over the browser's DevTools websocket (flat sessions)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, log: PageLog) -> None:
        self._ws = ws
        self._log = log
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())
        self.session: str | None = None

    async def _read(self) -> None:
        async for message in self._ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            elif "method" in data:
                self._log.note(data["method"], data.get("params", {}))
                if data["method"] == "Page.javascriptDialogOpening":
                    await self._dismiss_dialog(data.get("sessionId"))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("DevTools connection closed"))

    async def _dismiss_dialog(self, session: str | None) -> None:
        """A dialog blocks the page (and every later call); dismiss it, it is already logged."""
        self._next_id += 1
        message: dict[str, Any] = {
            "id": self._next_id,
            "method": "Page.handleJavaScriptDialog",
            "params": {"accept": False},
        }
        if session is not None:
            message["sessionId"] = session
        await self._ws.send_str(json.dumps(message))

    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False
    ) -> Any:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if not browser and self.session is not None:
            message["sessionId"] = self.session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        await self._ws.send_str(json.dumps(message))
        reply = await asyncio.wait_for(future, CALL_S)
        if "error" in reply:
            raise RuntimeError(f"DevTools {method}: {reply['error']}")
        return reply.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}
        )
        return result.get("result", {}).get("value")

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


async def _devtools_url(process: asyncio.subprocess.Process) -> str:
    assert process.stderr is not None
    seen: list[str] = []
    async with asyncio.timeout(STARTUP_S):
        while True:
            line = (await process.stderr.readline()).decode(errors="replace")
            if not line:
                raise RuntimeError("Chromium exited before DevTools was up:\n" + "".join(seen))
            seen.append(line)
            if "DevTools listening on " in line:
                return line.split("DevTools listening on ", 1)[1].strip()


async def _drain(stream: asyncio.StreamReader | None) -> None:
    """Keep reading Chromium's stderr so that its pipe never fills and blocks the browser."""
    if stream is None:
        return
    while await stream.readline():
        pass


@dataclass
class PageResult:
    log: PageLog
    rendered: str | None
    failed: str | None
    marks: dict[str, int]
    text: str
    tooltip: str
    screenshot_png: bytes


async def _hover(tools: DevTools, selector: str) -> str:
    """Move the real mouse onto the last element matching ``selector`` (for the run page's
    timeline: the last-drawn point, a failure, as failures are drawn last, on top); the tooltip
    text that shows up, or ""."""
    where = await tools.evaluate(
        f"(() => {{ const all = document.querySelectorAll({json.dumps(selector)});"
        " const p = all[all.length - 1]; if (!p) return null; p.scrollIntoView({block: 'center'});"
        " const r = p.getBoundingClientRect();"
        " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
    )
    if where is None:
        return ""
    for _ in range(2):  # a first move enters the canvas, a second lands on the point
        await tools.call(
            "Input.dispatchMouseEvent", {"type": "mouseMoved", "x": where[0], "y": where[1]}
        )
    text = ""
    for _ in range(25):  # up to 5 s
        await asyncio.sleep(0.2)
        text = await tools.evaluate(
            "(() => { const t = document.getElementById('vg-tooltip-element');"
            " return t && t.classList.contains('visible') ? t.innerText : ''; })()"
        )
        if text:
            break
    return str(text)


async def open_page(
    chromium: str, page_uri: str, *, hover: str | None = None, width: int = 1400
) -> PageResult:
    """Load the page offline, wait until its charts report done, collect events and a screenshot.

    ``hover``: a CSS selector; the mouse is moved onto its last match and the tooltip text kept.
    """
    log = PageLog()
    with tempfile.TemporaryDirectory(prefix="servingperf-chromium-") as profile:
        process = await asyncio.create_subprocess_exec(
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--proxy-server=127.0.0.1:9",  # belt and braces: anything that escapes goes nowhere
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        drain: asyncio.Task[None] | None = None
        try:
            url = await _devtools_url(process)
            drain = asyncio.create_task(_drain(process.stderr))
            async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
                tools = DevTools(ws, log)
                try:
                    target = await tools.call(
                        "Target.createTarget", {"url": "about:blank"}, browser=True
                    )
                    attached = await tools.call(
                        "Target.attachToTarget",
                        {"targetId": target["targetId"], "flatten": True},
                        browser=True,
                    )
                    tools.session = attached["sessionId"]
                    for domain in ("Runtime", "Log", "Network", "Page"):
                        await tools.call(f"{domain}.enable")
                    await tools.call(
                        "Network.emulateNetworkConditions",
                        {
                            "offline": True,
                            "latency": 0,
                            "downloadThroughput": -1,
                            "uploadThroughput": -1,
                        },
                    )
                    await tools.call(
                        "Emulation.setDeviceMetricsOverride",
                        {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
                    )
                    await tools.call("Page.navigate", {"url": page_uri})
                    rendered = None
                    async with asyncio.timeout(RENDER_S):
                        while rendered is None:
                            await asyncio.sleep(0.2)
                            rendered = await tools.evaluate(
                                "document.body ? document.body.dataset.chartsRendered ?? null : null"
                            )
                    failed = await tools.evaluate("document.body.dataset.chartsFailed ?? null")
                    marks_json = await tools.evaluate(
                        "JSON.stringify(Object.fromEntries([...document.querySelectorAll("
                        "'figure.chart')].map(f => [f.dataset.chart,"
                        " Number(f.querySelector('[data-marks]')?.dataset.marks ?? -1)])))"
                    )
                    text = await tools.evaluate("document.body.innerText")
                    tooltip = await _hover(tools, hover) if hover else ""
                    await tools.evaluate("window.scrollTo(0, 0)")
                    layout = await tools.call("Page.getLayoutMetrics")
                    height = int(layout["cssContentSize"]["height"])
                    shot = await tools.call(
                        "Page.captureScreenshot",
                        {
                            "format": "png",
                            "captureBeyondViewport": True,
                            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
                        },
                    )
                    png = base64.b64decode(shot["data"])
                    with contextlib.suppress(Exception):
                        await tools.call("Browser.close", browser=True)
                finally:
                    await tools.close()
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 10)
            if drain is not None:
                drain.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await drain
    return PageResult(log, rendered, failed, json.loads(marks_json), str(text), tooltip, png)


def external_requests(log: PageLog) -> list[str]:
    """Requests to anything but a local file: a self-contained page makes none."""
    return [url for url in log.requests if not url.startswith("file://")]


def keep_screenshot(result: PageResult, *parts: str) -> Path:
    """Write the page's screenshot under the test artifacts (``test-artifacts/<parts>``)."""
    path = ARTIFACTS.joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(result.screenshot_png)
    return path
