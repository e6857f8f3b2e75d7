"""A Locust user file streaming OpenAI completions, as a Locust user would write one for an LLM
(benchmarks only). Each user sends its next request when the last returned (closed loop), reads
the SSE stream line by line, and notes the arrival of every token-bearing chunk; at the end each
process appends one JSON line per request to $LOCUST_LLM_OUT.<pid> (sent, first token, chunk
times; Python's time.perf_counter, which is CLOCK_MONOTONIC on Linux like the server's clock).

Environment: LOCUST_LLM_TOKENS (max_tokens, default 16), LOCUST_LLM_OUT (output prefix).
"""

import json
import os
import time

from locust import HttpUser, constant, events, task

TOKENS = int(os.environ.get("LOCUST_LLM_TOKENS", "16"))
OUT = os.environ.get("LOCUST_LLM_OUT", "")
RESULTS = []


class LLMUser(HttpUser):
    wait_time = constant(0)

    @task
    def generate(self):
        body = {
            "model": "m",
            "prompt": "hello",
            "max_tokens": TOKENS,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        sent = time.monotonic()
        chunks = []
        with self.client.post(
            "/v1/completions", json=body, stream=True, catch_response=True, name="completions"
        ) as response:
            for line in response.iter_lines():
                if not line.startswith(b"data: "):
                    continue
                payload = line[6:]
                if payload == b"[DONE]":
                    break
                data = json.loads(payload)
                choices = data.get("choices") or []
                if choices and choices[0].get("text"):
                    chunks.append(time.monotonic())
            end = time.monotonic()
            if chunks:
                response.success()
                RESULTS.append({"sent": sent, "chunks": chunks, "end": end})
            else:
                response.failure("no tokens")


@events.quitting.add_listener
def _dump(environment, **kwargs):
    if OUT:
        with open(f"{OUT}.{os.getpid()}", "w") as f:
            for item in RESULTS:
                f.write(json.dumps(item) + "\n")
