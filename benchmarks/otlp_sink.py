"""A local OTLP/HTTP trace sink for the tracing-cost benchmarks.

Accepts ``POST /v1/traces`` (protobuf, as the OTLP/HTTP exporter sends it), counts the spans and
answers 200, so a traced server or worker exports for real without a collector. On SIGINT or
SIGTERM it prints one JSON line with the requests and spans it received.

Usage::

    python benchmarks/otlp_sink.py --port 4318 &
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 python benchmarks/bench_queue.py ...
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_ANSWER = ExportTraceServiceResponse().SerializeToString()


class Counts:
    """What the sink has received."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.spans = 0

    def add(self, body: bytes) -> None:
        """Count the spans of one export request."""
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with self.lock:
            self.requests += 1
            self.spans += spans


def serve(port: int) -> None:
    """Serve on 127.0.0.1:``port`` until SIGINT/SIGTERM, then print the counts."""
    counts = Counts()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # the http.server hook's name
            counts.add(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(_ANSWER)))
            self.end_headers()
            self.wfile.write(_ANSWER)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()
    server.server_close()
    sys.stdout.write(json.dumps({"requests": counts.requests, "spans": counts.spans}) + "\n")


def main() -> None:
    """Parse the port and serve."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=4318)
    serve(parser.parse_args().port)


if __name__ == "__main__":
    main()
