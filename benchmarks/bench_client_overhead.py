"""Client overhead: how much one client core can drive, servingperf against its peers and wrk.

Workload: 64 users (connections) in closed loop, streamed completions of 16 output tokens, against
a server that answers instantly (benchmarks/sse_server.py ``--instant``: headers and the whole SSE
stream in one write) pinned to core 1. Every client is pinned to core 0 (``taskset -c 0``, all
its processes). Figures are taken over the same window of every run, after a warm-up: completed
requests and streamed tokens as the *server* counted them (the same counter for every tool), and
the client's CPU seconds (its whole process tree) over that window. "req/s per client core" =
completed requests / client CPU seconds: what one fully busy core would sustain.

Why not the emulator: its aiohttp front end costs more CPU per chunk than this bare asyncio
server, and with one core for the server it (not the clients) would be the limit; see
docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_client_overhead.py [--duration 20] [--tools servingperf,wrk]

``servingperf-tokenizer`` is servingperf counting each chunk's tokens with a word-level
``tokenizer.json`` (``models[].tokens.tokenizer``): the price of tokenising chunks, which a
client without a tokenizer never pays.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    BENCH,
    PYTHON,
    Server,
    ensure_peer,
    guidellm_prompts,
    load_average,
    local_tokenizer,
    pinned,
    print_table,
    sse_server,
    tree_cpu_s,
)

USERS = 64
TOKENS = 16
WARMUP_S = 6.0


@dataclass
class Result:
    tool: str
    requests_per_s: float
    tokens_per_s: float
    cpu_per_1000: float
    per_core: float
    client_cpu_share: float


def word_tokenizer(directory: Path) -> Path:
    """A word-level Hugging Face ``tokenizer.json`` made here (the ``tokenizers`` extra): what
    ``servingperf-tokenizer`` counts each chunk's text with."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<unk>", "tok", "hello"] + [f"w{i}" for i in range(2000)]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory / "tokenizer.json"


def command(tool: str, url: str, duration: float, work: Path) -> list[str]:
    total = duration + WARMUP_S + 2
    if tool in ("servingperf", "servingperf-tokenizer"):
        tokenizer = (
            ["--tokenizer", str(word_tokenizer(work / "tok"))]
            if tool == "servingperf-tokenizer"
            else []
        )
        return [
            PYTHON,
            str(BENCH / "spclient.py"),
            url,
            str(work / "sp"),
            "--users",
            str(USERS),
            "--duration",
            str(total),
            "--output-tokens",
            str(TOKENS),
            *tokenizer,
        ]
    if tool == "wrk":
        script = work / "post.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            f'wrk.body = \'{{"model":"m","prompt":"hello","max_tokens":{TOKENS},'
            '"stream":true}\'\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        return [
            "wrk",
            "-t1",
            f"-c{USERS}",
            f"-d{int(total)}s",
            "-s",
            str(script),
            f"{url}/v1/completions",
        ]
    if tool == "locust":
        return [
            str(ensure_peer("locust") / "locust"),
            "-f",
            str(BENCH / "peers/locust_llm.py"),
            "--headless",
            "-u",
            str(USERS),
            "-r",
            str(USERS),
            "-t",
            f"{int(total)}s",
            "-H",
            url,
            "--only-summary",
            "--loglevel",
            "WARNING",
        ]
    if tool == "guidellm":
        return [
            str(ensure_peer("guidellm") / "guidellm"),
            "run",
            "--backend",
            f"kind=openai_http,target={url},model=m,request_format=/v1/completions",
            "--profile",
            f"kind=concurrent,streams={USERS}",
            "--constraint",
            f"kind=max_duration,seconds={int(total)}",
            "--data",
            f"kind=json_file,path={guidellm_prompts(work, TOKENS)}",
            "--tokenizer",
            f"kind=huggingface_auto,model={local_tokenizer(work / 'tok')}",
            "--output",
            f"kind=json,path={work / 'guidellm.json'}",
            "--disable-console-interactive",
        ]
    if tool == "aiperf":
        return [
            str(ensure_peer("aiperf") / "aiperf"),
            "profile",
            "-m",
            "m",
            "--url",
            url,
            "--endpoint-type",
            "completions",
            "--streaming",
            "--concurrency",
            str(USERS),
            "--benchmark-duration",
            str(int(total)),
            "--tokenizer",
            str(local_tokenizer(work / "tok")),
            "--output-tokens-mean",
            str(TOKENS),
            "--synthetic-input-tokens-mean",
            "8",
            "--use-server-token-count",
            "--ui",
            "none",
            "--artifact-dir",
            str(work / "aiperf"),
        ]
    raise ValueError(tool)


def measure(tool: str, server: Server, duration: float, work: Path) -> Result:
    argv = command(tool, server.url, duration, work)
    log = (work / f"{tool}.log").open("wb")
    ours = tool.startswith("servingperf")
    env = {**os.environ, "PYTHONPATH": str(BENCH.parent)} if ours else None
    process = subprocess.Popen(
        pinned(argv), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work
    )
    try:
        # the warm-up starts when the server sees the tool's first completed request
        deadline = time.monotonic() + 120
        base = server.stats()["completed"]
        while server.stats()["completed"] == base:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{tool} sent nothing; see {work / (tool + '.log')}")
            time.sleep(0.1)
        time.sleep(WARMUP_S)
        s0, c0, t0 = server.stats(), tree_cpu_s(process.pid), time.monotonic()
        time.sleep(duration)
        s1, c1, t1 = server.stats(), tree_cpu_s(process.pid), time.monotonic()
    finally:
        try:
            process.wait(timeout=max(60.0, duration + 60))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    completed = s1["completed"] - s0["completed"]
    cpu = c1 - c0
    wall = t1 - t0
    return Result(
        tool=tool,
        requests_per_s=completed / wall,
        tokens_per_s=(s1["tokens"] - s0["tokens"]) / wall,
        cpu_per_1000=cpu / completed * 1000 if completed else float("nan"),
        per_core=completed / cpu if cpu > 0 else float("nan"),
        client_cpu_share=cpu / wall,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="measured window, s")
    parser.add_argument("--tools", default="servingperf,wrk,locust,guidellm,aiperf")
    parser.add_argument("--keep", type=Path, help="keep logs and outputs in this directory")
    args = parser.parse_args()
    tools = args.tools.split(",")
    load_before = load_average()
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp,
        sse_server("--instant") as server,
    ):
        for tool in tools:
            work = (args.keep or Path(tmp)) / tool
            work.mkdir(parents=True, exist_ok=True)
            results.append(measure(tool, server, args.duration, work))
            print(f"  {tool}: {results[-1].requests_per_s:,.0f} req/s", file=sys.stderr, flush=True)
    ours = next((r for r in results if r.tool == "servingperf"), None)
    peers = [r for r in results if not r.tool.startswith("servingperf") and r.tool != "wrk"]
    rows = [
        [
            r.tool,
            r.requests_per_s,
            r.tokens_per_s,
            r.cpu_per_1000,
            r.per_core,
            f"{r.client_cpu_share:.0%}",
            f"{ours.per_core / r.per_core:.1f}x" if ours and r is not ours else "-",
        ]
        for r in results
    ]
    print_table(
        f"Client overhead: {USERS} users, {TOKENS} tokens, instant server on core 1, client on"
        f" core 0 (load average before: {load_before}, after: {load_average()})",
        [
            "tool",
            "completed req/s",
            "streamed tokens/s",
            "client CPU s / 1,000 req",
            "req/s per client core",
            "client CPU used",
            "servingperf per-core ratio",
        ],
        rows,
    )
    if ours and peers:
        best = max(peers, key=lambda r: r.per_core)
        print(
            f"servingperf / best LLM-aware peer ({best.tool}), req/s per client core:"
            f" {ours.per_core / best.per_core:.2f}x (target >= 2x)"
        )
    wrk = next((r for r in results if r.tool == "wrk"), None)
    if ours and wrk:
        print(
            f"wrk / servingperf, completed req/s: {wrk.requests_per_s / ours.requests_per_s:.2f}x"
            f"; per client core: {wrk.per_core / ours.per_core:.2f}x (target <= 2x)"
        )


if __name__ == "__main__":
    main()
