"""An OpenSearch API double on loopback: the ``_bulk`` endpoint as a real server answers it.

No OpenSearch or Elasticsearch server can run here (Debian ships neither; PyPI has only clients;
the server tarballs come from a host this machine cannot reach), so the export's real client path
(``opensearch-py`` -> HTTP -> ``_bulk``) is tested against this double. It proves our client calls
and the documents' shape, not indexing, mappings or queries of a real cluster. It answers
``GET /`` (cluster info), ``POST /_bulk`` and ``POST /<index>/_bulk`` (NDJSON action and source
lines; ``index`` and ``create`` actions), keeps every document per index, checks HTTP basic
credentials when given, and can refuse documents (a 400 per item, as a mapping conflict does).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class OpenSearchDouble:
    def __init__(
        self,
        credentials: tuple[str, str] | None = None,
        refuse: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        self.indices: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str]] = []
        self._credentials = credentials
        self._refuse = refuse
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if double._credentials is None:
                    return True
                user, password = double._credentials
                token = base64.b64encode(f"{user}:{password}".encode()).decode()
                if self.headers.get("Authorization") == f"Basic {token}":
                    return True
                self._reply(401, {"error": "Unauthorized", "status": 401})
                return False

            def do_GET(self) -> None:
                double.requests.append(("GET", self.path))
                if self._authorised():
                    self._reply(
                        200, {"version": {"distribution": "opensearch", "number": "2.19.0"}}
                    )

            def do_POST(self) -> None:
                double.requests.append(("POST", self.path))
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode()
                if not self._authorised():
                    return
                path = self.path.split("?")[0]
                if not path.endswith("/_bulk"):
                    self._reply(404, {"error": f"no handler for {path}", "status": 404})
                    return
                default_index = path[: -len("/_bulk")].strip("/") or None
                lines = [line for line in body.split("\n") if line.strip()]
                items = []
                for action_line, source_line in zip(lines[::2], lines[1::2], strict=True):
                    action = json.loads(action_line)
                    ((kind, meta),) = action.items()
                    index = meta.get("_index") or default_index
                    source = json.loads(source_line)
                    if double._refuse is not None and double._refuse(source):
                        items.append(
                            {
                                kind: {
                                    "_index": index,
                                    "status": 400,
                                    "error": {
                                        "type": "mapper_parsing_exception",
                                        "reason": "refused by the double",
                                    },
                                }
                            }
                        )
                        continue
                    stored = double.indices.setdefault(str(index), [])
                    stored.append(source)
                    items.append(
                        {
                            kind: {
                                "_index": index,
                                "_id": str(len(stored)),
                                "status": 201,
                                "result": "created",
                            }
                        }
                    )
                errors = any(item[next(iter(item))]["status"] >= 300 for item in items)
                self._reply(200, {"took": 1, "errors": errors, "items": items})

        return Handler
