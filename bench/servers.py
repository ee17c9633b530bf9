"""Loopback servers for the benchmarks, each in its own process.

`time.process_time` counts every thread of the measuring process, so a server in a thread of
that process (moto's `mock_aws`, an in-process sandbox) would bill its CPU to the handler.
Here each server runs as a child (`python -m bench.servers KIND`), prints `READY <url>`, and
exits when its stdin closes, so a crashed benchmark never leaves one behind.

Kinds:
  aws-stub  canned answers to SQS SendMessage and Secrets Manager GetSecretValue (the webhook's
            only AWS calls), so the webhook's own CPU is what is measured, not an emulator's;
  moto      moto's server (DynamoDB, SQS, ...) with DynamoDB's per-item write atomicity;
  sandbox   the Mailivery sandbox (devstack.sandbox), optionally time-scaled.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, Self

from devstack.service import Service

READY: Final = "READY "
STUB_SECRET_ARN: Final = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:bench-AbCdEf"  # noqa: S105


class BackgroundServer(Service):
    """A `python -m bench.servers KIND ...` child; `url` once started. Stops only its own child."""

    def __init__(self, kind: str, *args: str, python: str = sys.executable) -> None:
        self._argv = [python, "-m", "bench.servers", kind, *args]
        self._process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> Self:
        return self.launch().ready()

    def launch(self) -> Self:
        """Start the child without waiting for it (see `running`: several start together)."""
        self._process = subprocess.Popen(
            self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        return self

    def ready(self) -> Self:
        """Wait for the launched child's READY line."""
        assert self._process is not None
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.startswith(READY):
            self.stop()
            raise RuntimeError(f"{' '.join(self._argv)} did not start (got {line!r})")
        self.url = line[len(READY) :].strip()
        return self

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        self._process = None
        if process.stdin is not None:
            process.stdin.close()  # the child's cue to exit
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()


@contextlib.contextmanager
def running(*servers: BackgroundServer) -> Iterator[tuple[BackgroundServer, ...]]:
    """Several children started at once (each spends most of its start importing), stopped
    at the end, whatever happens."""
    try:
        for server in servers:
            server.launch()
        yield tuple(server.ready() for server in servers)
    finally:
        for server in servers:
            server.stop()


# --------------------------------------------------------------------------- the children


def aws_stub_answer(
    target: str, request: dict[str, Any], secret_value: str
) -> tuple[int, str, dict[str, Any]]:
    """(status, content type, body) for one botocore JSON-protocol call, by X-Amz-Target."""
    if target == "AmazonSQS.SendMessage":
        body = str(request.get("MessageBody", ""))
        return (
            200,
            "application/x-amz-json-1.0",
            {
                "MessageId": str(uuid.uuid4()),
                # Not checked by botocore 1.4x, sent anyway so the answer has the real shape.
                "MD5OfMessageBody": hashlib.md5(body.encode()).hexdigest(),  # noqa: S324
            },
        )
    if target == "secretsmanager.GetSecretValue":
        return (
            200,
            "application/x-amz-json-1.1",
            {
                "ARN": STUB_SECRET_ARN,
                "Name": str(request.get("SecretId", "")),
                "SecretString": secret_value,
                "VersionId": "00000000-0000-0000-0000-000000000001",
                "VersionStages": ["AWSCURRENT"],
                "CreatedDate": 1_700_000_000,
            },
        )
    return 400, "application/x-amz-json-1.0", {"__type": "UnknownOperation", "message": target}


def aws_stub_server(secret_value: str) -> ThreadingHTTPServer:
    """The stub on http.server, not werkzeug: werkzeug closes every connection, while AWS
    endpoints keep them alive and a warm Lambda reuses them, so a reconnect per call would be
    billed to the handler."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length
        # Headers and body go out in two writes; with Nagle on, the body waits for the
        # client's delayed ACK of the headers (~40 ms a call).
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            status, content_type, answer = aws_stub_answer(
                self.headers.get("X-Amz-Target", ""), request, secret_value
            )
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the parent reads only the READY line

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


def _quiet_werkzeug() -> None:
    # moto and werkzeug log every request; the parent reads only the READY line.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("kind", choices=["aws-stub", "moto", "sandbox"])
    parser.add_argument("--secret", default="bench-webhook-token-0123456789")  # a local stub
    parser.add_argument("--api-key", default="sandbox-key")
    parser.add_argument("--rate-limit", type=int, default=240)
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    _quiet_werkzeug()
    stop: Callable[[], None]
    if args.kind == "aws-stub":
        server = aws_stub_server(args.secret)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}"
        stop = server.shutdown
    elif args.kind == "moto":
        from moto.server import ThreadedMotoServer

        from devstack.testkit import atomic_dynamodb_writes

        atomic_dynamodb_writes().__enter__()  # for the child's whole life
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        host, port = moto.get_host_and_port()
        url = f"http://{host}:{port}"
        stop = moto.stop
    else:
        from devstack.sandbox import MailiverySandbox

        sandbox = MailiverySandbox(
            api_keys=(args.api_key,),
            rate_limit_per_minute=args.rate_limit,
            time_scale=args.time_scale,
        ).start()
        url = sandbox.url
        stop = sandbox.stop
    print(READY + url, flush=True)
    sys.stdin.read()  # returns at EOF: the parent closed our stdin or died
    stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
