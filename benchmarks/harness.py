"""What the client benchmarks share: the benchmark server, peers' virtual environments, CPU
accounting of a process tree, and table printing. Not part of servingperf.

CPU of a tool = user + system time of its process and every descendant (``/proc``), including
children already reaped (``cutime``/``cstime``), sampled at the start and end of the measurement
window, so start-up (imports, spawning workers, tokenizer loading) is not counted against anyone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
PEERS_DIR = Path(os.environ.get("SERVINGPERF_PEERS_DIR", "/tmp/servingperf-peers"))
PYTHON = sys.executable
CLIENT_CPU = "0"  # the one core every measured client is pinned to
SERVER_CPUS = "1"  # the server's core(s)
_TICK = os.sysconf("SC_CLK_TCK")

# Peers, each in its own venv under PEERS_DIR (never in servingperf's): name -> pip requirement.
PEERS = {"locust": "locust==2.47.0", "guidellm": "guidellm==0.8.1", "aiperf": "aiperf==0.13.0"}


def start_api_double(
    folder: Path, options: Sequence[str], timeout_s: float = 30.0
) -> tuple[subprocess.Popen[bytes], str]:
    """The Kubernetes API double (``tests.fakes.kube_api``) in a process of its own, with
    ``--port-file`` and ``--kubeconfig`` in ``folder`` plus ``options``; returns it and its URL
    once the port file (written last) exists."""
    port_file = folder / "url"
    command = [sys.executable, "-m", "tests.fakes.kube_api", "--port-file", str(port_file)]
    command += ["--kubeconfig", str(folder / "kubeconfig"), *options]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + timeout_s
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit("the API double did not start")
        time.sleep(0.05)
    time.sleep(0.05)  # let the writer finish the file
    return process, port_file.read_text()


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout_s} s")


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    ground_truth: Path | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, float]:
        with urllib.request.urlopen(f"{self.url}/stats", timeout=5) as response:
            data: dict[str, float] = json.loads(response.read())
        return data


@contextlib.contextmanager
def sse_server(
    *args: str, processes: int = 1, cpus: str = SERVER_CPUS, ground_truth: Path | None = None
) -> Iterator[Server]:
    """The benchmark server (benchmarks/sse_server.py), stopped and reaped on exit."""
    port = free_port()
    command = pinned(
        [
            PYTHON,
            str(BENCH / "sse_server.py"),
            "--port",
            str(port),
            "--processes",
            str(processes),
            *args,
        ],
        cpus,
    )
    if ground_truth is not None:
        command += ["--ground-truth", str(ground_truth)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_listening(port)
        time.sleep(0.3)  # let every process of a multi-process server bind
        yield Server(port, process, ground_truth)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system, reaped children included) of ``root`` and its descendants."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2 :].split()
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        times[pid] = sum(int(x) for x in fields[11:15]) / _TICK
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack.extend(children.get(pid, ()))
    return total


def ensure_peer(name: str) -> Path:
    """The peer's venv (created and installed with pip when missing); its bin directory."""
    venv = PEERS_DIR / name
    marker = venv / ".servingperf-installed"
    if not marker.exists():
        print(f"installing {PEERS[name]} into {venv} (once) ...", file=sys.stderr, flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        base = shutil.which("python3.11") or shutil.which("python3") or "python3"
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", PEERS[name]],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        marker.write_text(PEERS[name] + "\n")
    return venv / "bin"


def local_tokenizer(directory: Path) -> Path:
    """A tiny word-level Hugging Face tokenizer on disk, for peers that insist on one (no hub)."""
    if (directory / "tokenizer.json").exists():
        return directory
    code = (
        "import sys\n"
        "from tokenizers import Tokenizer, models, pre_tokenizers\n"
        "from transformers import PreTrainedTokenizerFast\n"
        "words = ['<unk>', '<s>', '</s>', 'tok', 'hello'] + [f'w{i}' for i in range(2000)]\n"
        "tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token='<unk>'))\n"
        "tok.pre_tokenizer = pre_tokenizers.Whitespace()\n"
        "PreTrainedTokenizerFast(tokenizer_object=tok, unk_token='<unk>', bos_token='<s>',"
        " eos_token='</s>').save_pretrained(sys.argv[1])\n"
    )
    python = ensure_peer("aiperf") / "python"
    subprocess.run(
        [str(python), "-c", code, str(directory)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return directory


def pinned(command: Sequence[str], cpus: str = CLIENT_CPU) -> list[str]:
    """``command`` on ``cpus``, at a raised priority when we may (root): other tenants of a
    shared machine then delay the measured tools and the server less (the same for every tool)."""
    boost = ["nice", "-n", "-10"] if os.geteuid() == 0 else []
    return [*boost, "taskset", "-c", cpus, *command]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Print (and return) a Markdown table."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
        return str(value)

    lines = [
        f"### {title}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    return text


def guidellm_prompts(directory: Path, output_tokens: int, rows: int = 200_000) -> Path:
    """A JSONL dataset for GuideLLM: its synthetic generator, tokenizing to hit exact prompt
    lengths, could not keep 64 streams busy here, and it stops when the data runs out."""
    path = directory / f"guidellm-prompts-{output_tokens}.jsonl"
    if not path.exists():
        with path.open("w") as f:
            for i in range(rows):
                f.write(
                    json.dumps(
                        {
                            "prompt": f"hello w{i % 2000}",
                            "prompt_tokens_count": 2,
                            "output_tokens_count": output_tokens,
                        }
                    )
                    + "\n"
                )
    return path
