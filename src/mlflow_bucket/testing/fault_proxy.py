"""A fault-injecting reverse HTTP proxy, run as a subprocess between a client and an emulator.

``python -m mlflow_bucket.testing.fault_proxy --upstream http://127.0.0.1:N [--port P]
[--latency-ms 30]`` forwards every request to the upstream, byte for byte, and can be told to
misbehave: answer errors (before or *after* the upstream applied the request), reset
connections (before, after, or halfway through the response body), add latency, stall
requests, or simulate an outage. It runs in its own process so that it shares neither memory
nor the GIL with the code under test, and is controlled over HTTP on its own port under the
reserved path prefix ``/__proxy__/`` (bucket names cannot contain underscores, so this never
collides with GCS or S3 paths). :class:`FaultProxy` is the Python handle for tests.

Forwarding is transparent on purpose:

* every request header goes upstream unchanged, ``Host`` included, so S3 SigV4 signatures
  (which cover ``host``) still verify, and emulators that build URLs from ``Host`` (resumable
  upload ``Location``) send the client back through the proxy; only hop-by-hop headers
  (``Connection``, ``Keep-Alive``, ``TE``, ...) are per connection;
* response headers, ``Date`` included, come from the upstream;
* bodies stream in both directions in chunks (``Content-Length`` or ``Transfer-Encoding:
  chunked``), so a 300 MB upload never sits whole in memory;
* client connections are HTTP/1.1 keep-alive; upstream connections are pooled.

Fault rules match on method and a path regex; each fires for the next ``count`` matches, for a
seeded-random ``fraction`` of them, or (neither given) for every match until ``clear()``. The
first firing fail/reset rule wins; stall rules add up with them.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import http.client
import json
import random
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self
from xml.sax.saxutils import escape as xml_escape

from mlflow_bucket.testing._process import ServerProcess, announce_ready, exit_with_parent

__all__ = ["CONTROL_PREFIX", "FaultProxy", "FaultProxyError", "main"]

CONTROL_PREFIX = "/__proxy__/"
_CHUNK = 256 * 1024
_MAX_LINE = 65536
# Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection, not the message; the proxy
# frames each side itself. Content-Length is re-set from the framing actually used.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
_GCS_JSON_API = re.compile(r"^/(?:upload/|download/|batch/)?storage/v1/")
_UPSTREAM_TIMEOUT = 300.0
_CLIENT_IDLE_TIMEOUT = 300.0

ResetWhen = Literal["before", "after", "mid_body"]


class FaultProxyError(RuntimeError):
    """The proxy's control endpoint refused a command."""


# --------------------------------------------------------------------------- server state


@dataclass
class _Rule:
    kind: Literal["fail", "reset", "stall"]
    remaining: int | None
    fraction: float | None
    methods: frozenset[str] | None
    path_re: re.Pattern[str] | None
    status: int = 503
    when: str = "before"
    seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.methods is not None and method not in self.methods:
            return False
        return self.path_re is None or self.path_re.search(path) is not None

    def fires(self, rng: random.Random) -> bool:
        if self.fraction is not None and rng.random() >= self.fraction:
            return False
        if self.remaining is not None:
            self.remaining -= 1
        return True


@dataclass
class _Decision:
    delay: float = 0.0
    stall: float = 0.0
    release: threading.Event | None = None
    outage: bool = False
    fault: _Rule | None = None


@dataclass
class _Stats:
    total: int = 0
    forwarded: int = 0
    delayed: int = 0
    connections: int = 0
    client_disconnects: int = 0
    upstream_errors: int = 0
    in_flight: int = 0
    by_method: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "forwarded": self.forwarded,
            "delayed": self.delayed,
            "connections": self.connections,
            "client_disconnects": self.client_disconnects,
            "upstream_errors": self.upstream_errors,
            "in_flight": self.in_flight,
            "by_method": dict(self.by_method),
            "faults": dict(self.faults),
        }


class _State:
    """Rules and counters, shared by all handler threads behind one lock."""

    def __init__(self, latency_ms: float, seed: int) -> None:
        self.lock = threading.Lock()
        self.rules: list[_Rule] = []
        self.initial_latency_ms = latency_ms
        self.latency_ms = latency_ms
        self.jitter_ms = 0.0
        self.outage_until = 0.0
        self.stats = _Stats()
        self.release = threading.Event()
        self._seed(seed)

    def _seed(self, seed: int) -> None:
        # Separate generators: jittered latency must not shift which requests a fraction hits.
        self.rng = random.Random(seed)
        self.jitter_rng = random.Random(seed + 1)

    def decide(self, method: str, path: str) -> _Decision:
        with self.lock:
            stats = self.stats
            stats.total += 1
            stats.in_flight += 1
            stats.by_method[method] += 1
            decision = _Decision(release=self.release)
            delay_ms = self.latency_ms
            if self.jitter_ms:
                delay_ms += self.jitter_rng.uniform(-self.jitter_ms, self.jitter_ms)
            if delay_ms > 0:
                decision.delay = delay_ms / 1000
                stats.delayed += 1
            if time.monotonic() < self.outage_until:
                decision.outage = True
                stats.faults["outage"] += 1
            for rule in self.rules:
                if not rule.matches(method, path):
                    continue
                if rule.kind == "stall":
                    if rule.fires(self.rng):
                        decision.stall = max(decision.stall, rule.seconds)
                        stats.faults["stall"] += 1
                elif decision.fault is None and not decision.outage and rule.fires(self.rng):
                    decision.fault = rule
                    stats.faults[_fault_name(rule)] += 1
            return decision

    def done(self) -> None:
        with self.lock:
            self.stats.in_flight -= 1

    def count(self, attribute: str) -> None:
        with self.lock:
            setattr(self.stats, attribute, getattr(self.stats, attribute) + 1)

    def control(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if action in ("fail", "reset", "stall"):
                self.rules.append(_parse_rule(action, body))
            elif action == "latency":
                self.latency_ms = _number(body, "ms", minimum=0)
                self.jitter_ms = _number(body, "jitter_ms", minimum=0, default=0)
            elif action == "outage":
                self.outage_until = time.monotonic() + _number(body, "seconds", minimum=0)
            elif action == "clear":
                self.rules.clear()
                self.latency_ms, self.jitter_ms = self.initial_latency_ms, 0.0
                self.outage_until = 0.0
                # Wake requests held by stall rules now rather than after their time.
                self.release.set()
                self.release = threading.Event()
            elif action == "seed":
                seed = body.get("seed")
                if not isinstance(seed, int) or isinstance(seed, bool):
                    raise ValueError("seed must be an integer")
                self._seed(seed)
            elif action == "stats":
                return self.stats.as_dict()
            elif action == "stats/reset":
                in_flight = self.stats.in_flight
                self.stats = _Stats(in_flight=in_flight)
            elif action == "health":
                pass
            else:
                raise LookupError(action)
            return {"ok": True}


def _fault_name(rule: _Rule) -> str:
    if rule.kind == "fail":
        return "fail_after" if rule.when == "after" else "fail"
    return f"reset_{rule.when}"


def _number(
    body: dict[str, Any], key: str, *, minimum: float, default: float | None = None
) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ValueError(f"{key} must be a number >= {minimum}")
    return float(value)


def _parse_rule(kind: str, body: dict[str, Any]) -> _Rule:
    count = body.get("count")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        raise ValueError("count must be an integer >= 0")
    fraction = body.get("fraction")
    if fraction is not None:
        fraction = _number(body, "fraction", minimum=0)
        if fraction > 1:
            raise ValueError("fraction must be within [0, 1]")
    methods = body.get("methods")
    if methods is not None:
        if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
            raise ValueError("methods must be a list of strings")
        methods = frozenset(m.upper() for m in methods)
    path_regex = body.get("path_regex")
    path_re = re.compile(path_regex) if path_regex is not None else None
    rule = _Rule("stall", count, fraction, methods, path_re)
    if kind == "fail":
        status = body.get("status")
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status code")
        rule.kind, rule.status = "fail", status
        rule.when = "after" if body.get("after_upstream") else "before"
    elif kind == "reset":
        when = body.get("when", "before")
        if when not in ("before", "after", "mid_body"):
            raise ValueError("when must be 'before', 'after' or 'mid_body'")
        rule.kind, rule.when = "reset", when
    else:
        rule.seconds = _number(body, "seconds", minimum=0)
    return rule


# --------------------------------------------------------------------------- upstream pool


class _UpstreamPool:
    """Idle keep-alive connections to the upstream, most recently used first."""

    def __init__(self, host: str, port: int, max_idle: int = 64) -> None:
        self.host, self.port, self.max_idle = host, port, max_idle
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def get(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection, and whether it was reused (a reused one may have gone stale)."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return http.client.HTTPConnection(
                    self.host, self.port, timeout=_UPSTREAM_TIMEOUT
                ), False
            if conn.sock is not None and not _readable(conn.sock):
                return conn, True
            conn.close()  # readable while idle means EOF (server closed it) or junk

    def put(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if conn.sock is not None and len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()


def _readable(sock: socket.socket) -> bool:
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


# --------------------------------------------------------------------------- error bodies

_S3_CODES = {
    400: ("BadRequest", "Bad Request"),
    403: ("AccessDenied", "Access Denied"),
    404: ("NoSuchKey", "The specified key does not exist."),
    408: (
        "RequestTimeout",
        "Your socket connection to the server was not read from or "
        "written to within the timeout period.",
    ),
    # What S3 answers a conditional write racing another one on the same key.
    409: (
        "ConditionalRequestConflict",
        "A conflicting operation occurred. If using PutObject you can retry the request.",
    ),
    412: ("PreconditionFailed", "At least one of the pre-conditions you specified did not hold"),
    429: ("TooManyRequests", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    501: ("NotImplemented", "A header you provided implies functionality that is not implemented"),
    503: ("SlowDown", "Please reduce your request rate."),
    504: ("GatewayTimeout", "The server did not respond in time."),
}
_GCS_REASONS = {
    400: "badRequest",
    401: "required",
    403: "forbidden",
    404: "notFound",
    408: "requestTimeout",
    409: "conflict",
    412: "conditionNotMet",
    429: "rateLimitExceeded",
    500: "backendError",
    502: "badGateway",
    503: "backendError",
    504: "gatewayTimeout",
}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _error_body(status: int, path: str) -> tuple[str, bytes]:
    """An error body shaped like the upstream's: GCS JSON API paths get JSON, others S3 XML."""
    if _GCS_JSON_API.match(path):
        message = f"{_phrase(status)} (injected by fault proxy)"
        reason = _GCS_REASONS.get(status, "backendError" if status >= 500 else "invalid")
        body = {
            "error": {
                "code": status,
                "message": message,
                "errors": [{"message": message, "domain": "global", "reason": reason}],
            }
        }
        return "application/json; charset=UTF-8", json.dumps(body).encode()
    code, message = _S3_CODES.get(status, (_phrase(status).replace(" ", ""), _phrase(status)))
    request_id = uuid.uuid4().hex[:16].upper()
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{xml_escape(message)}</Message>"
        f"<Resource>{xml_escape(path)}</Resource><RequestId>{request_id}</RequestId></Error>"
    )
    return "application/xml", xml.encode()


# --------------------------------------------------------------------------- request handler


class _ClientGone(Exception):
    """The client closed its connection (or sent garbage) while we read or wrote."""


class _UpstreamFailed(Exception):
    """The upstream could not be reached or broke off."""


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # do not keep a list of every thread ever started
    request_queue_size = 1024  # benchmarks open many connections at once
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: _State, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"upstream must be an http:// URL, got {upstream!r}")
        self.state = state
        self.upstream_prefix = parsed.path.rstrip("/")
        self.pool = _UpstreamPool(parsed.hostname, parsed.port or 80)
        self.verbose = False
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up is business as usual for a fault proxy; anything else is a bug
        # worth its traceback on stderr.
        if isinstance(sys.exc_info()[1], OSError | _ClientGone):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _CLIENT_IDLE_TIMEOUT
    # Headers and body go out in separate writes; with Nagle each response would wait for
    # the client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    server: _ProxyServer
    _proxied = False  # whether this connection has carried a proxied request yet

    # Per-request body state.
    _chunked = False
    _length = 0
    _body_done = True
    _body_started = False
    _trailers: list[bytes]

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (OSError, _ClientGone):
            self.close_connection = True

    # -- dispatch

    def _handle(self) -> None:
        if self.path.startswith(CONTROL_PREFIX):
            self._control()
            return
        self._start_body()
        state = self.server.state
        if not self._proxied:
            # Counted here, not on accept, so that control calls do not count.
            self._proxied = True
            state.count("connections")
        decision = state.decide(self.command, self.path)
        try:
            self._serve(decision)
        except _ClientGone:
            state.count("client_disconnects")
            self.close_connection = True
        finally:
            state.done()
            if not self._body_done:
                # Unread request bytes would be parsed as the next request.
                self.close_connection = True

    def _serve(self, decision: _Decision) -> None:
        if decision.delay:
            time.sleep(decision.delay)
        if decision.stall and decision.release is not None:
            decision.release.wait(decision.stall)
        rule = decision.fault
        if decision.outage:
            self._drain_request()
            self._send_error(503, "outage")
            return
        if rule is not None and rule.kind == "reset" and rule.when == "before":
            self._reset_connection()
            return
        if rule is not None and rule.kind == "fail" and rule.when == "before":
            self._drain_request()
            self._send_error(rule.status, "fail")
            return
        self._forward(rule)

    # -- control endpoint

    def _control(self) -> None:
        self._start_body()
        raw = b"".join(self._request_body())
        action = self.path[len(CONTROL_PREFIX) :].split("?", 1)[0].strip("/")
        try:
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            status, answer = 200, self.server.state.control(action, body)
        except LookupError:
            status, answer = 404, {"error": f"unknown control action {action!r}"}
        except (ValueError, re.error) as exc:
            status, answer = 400, {"error": str(exc)}
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self._write(payload)

    # -- request body

    def _start_body(self) -> None:
        self._trailers = []
        encoding = self.headers.get("Transfer-Encoding", "")
        self._chunked = "chunked" in encoding.lower()
        try:
            self._length = 0 if self._chunked else int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._length = 0
        self._body_done = not self._chunked and self._length == 0
        self._body_started = False

    def _request_body(self) -> Iterator[bytes]:
        """The request body in pieces, dechunked if need be; trailers go to ``_trailers``."""
        if self._body_done:
            return
        self._body_started = True
        rfile = self.rfile
        try:
            if not self._chunked:
                remaining = self._length
                while remaining:
                    data = rfile.read1(min(remaining, _CHUNK))
                    if not data:
                        raise _ClientGone("EOF in request body")
                    remaining -= len(data)
                    yield data
            else:
                while True:
                    line = rfile.readline(_MAX_LINE)
                    if not line.endswith(b"\n"):
                        raise _ClientGone("bad or truncated chunk header")
                    size = int(line.split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        break
                    remaining = size
                    while remaining:
                        data = rfile.read1(min(remaining, _CHUNK))
                        if not data:
                            raise _ClientGone("EOF in request chunk")
                        remaining -= len(data)
                        yield data
                    if rfile.readline(_MAX_LINE).strip():
                        raise _ClientGone("chunk not followed by CRLF")
                while True:
                    line = rfile.readline(_MAX_LINE)
                    if not line.endswith(b"\n"):
                        raise _ClientGone("truncated trailers")
                    if not line.strip():
                        break
                    self._trailers.append(line)
        except (OSError, ValueError) as exc:
            raise _ClientGone(str(exc)) from exc
        self._body_done = True

    def _drain_request(self) -> None:
        for _ in self._request_body():
            pass

    # -- answering the client

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
        except OSError as exc:
            raise _ClientGone(str(exc)) from exc

    def _send_error(self, status: int, kind: str) -> None:
        content_type, body = _error_body(status, self.path)
        try:
            self.send_response_only(status)
            self.send_header("Date", email.utils.formatdate(usegmt=True))
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Fault-Proxy", kind)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
        except OSError as exc:
            raise _ClientGone(str(exc)) from exc
        if self.command != "HEAD":
            self._write(body)

    def _reset_connection(self) -> None:
        """Abort the client connection with a TCP RST (SO_LINGER 0), not a polite FIN."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The socket only really closes (and sends the RST) once rfile's reference is gone too.
        with contextlib.suppress(OSError):
            self.rfile.close()
        with contextlib.suppress(OSError):
            self.connection.close()

    # -- forwarding

    def _forward(self, rule: _Rule | None) -> None:
        state = self.server.state
        try:
            conn, response = self._exchange()
        except _UpstreamFailed as exc:
            state.count("upstream_errors")
            self.close_connection = self.close_connection or not self._body_done
            self._send_plain(502, f"fault proxy: upstream failed: {exc}\n")
            return
        state.count("forwarded")
        if rule is not None and rule.when == "after":
            # The upstream applied the request; the client must not learn that.
            self._finish_upstream(conn, response, drain=True)
            if rule.kind == "reset":
                self._reset_connection()
            else:
                self._send_error(rule.status, "fail_after")
            return
        self._relay(conn, response, mid_body_reset=rule is not None and rule.when == "mid_body")

    def _exchange(self) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send the request upstream (streaming its body) and return the response head."""
        pool = self.server.pool
        while True:
            conn, reused = pool.get()
            try:
                try:
                    self._send_upstream(conn)
                except OSError:
                    # The upstream may have answered early (rejecting the body) and hung up:
                    # its own answer is worth more than a 502, if it can still be read.
                    try:
                        response = conn.getresponse()
                    except (OSError, http.client.HTTPException):
                        pass
                    else:
                        self.close_connection = True  # the rest of the body is unread
                        return conn, response
                    raise
                return conn, conn.getresponse()
            except _ClientGone:
                conn.close()
                raise
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                # A pooled connection the upstream closed meanwhile: retry on another one, but
                # only if no body was read yet, since a streamed body cannot be replayed.
                if reused and not self._body_started:
                    continue
                raise _UpstreamFailed(f"{type(exc).__name__}: {exc}") from exc

    def _send_upstream(self, conn: http.client.HTTPConnection) -> None:
        conn.putrequest(
            self.command,
            self.server.upstream_prefix + self.path,
            skip_host=True,
            skip_accept_encoding=True,
        )
        has_host = False
        for name, value in self.headers.items():
            lower = name.lower()
            if lower in _HOP_BY_HOP:
                continue
            has_host = has_host or lower == "host"
            conn.putheader(name, value)
        if not has_host:
            conn.putheader("Host", f"{conn.host}:{conn.port}")
        if self._chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        elif "Content-Length" in self.headers:
            conn.putheader("Content-Length", str(self._length))
        conn.endheaders()
        body = self._request_body()
        if self._chunked:
            for data in body:
                conn.send(b"%x\r\n" % len(data))
                conn.send(data)
                conn.send(b"\r\n")
            conn.send(b"0\r\n" + b"".join(self._trailers) + b"\r\n")
        else:
            for data in body:
                conn.send(data)

    def _finish_upstream(
        self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse, drain: bool
    ) -> None:
        """Return the connection to the pool if the response was read to its end."""
        try:
            if drain:
                while response.read(_CHUNK):
                    pass
        except (OSError, http.client.HTTPException):
            conn.close()
            return
        if response.isclosed() and not response.will_close:
            self.server.pool.put(conn)
        else:
            conn.close()

    def _relay(
        self,
        conn: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        *,
        mid_body_reset: bool,
    ) -> None:
        no_body = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
        length = response.length
        chunked = False
        try:
            self.send_response_only(response.status, response.reason)
            for name, value in response.getheaders():
                lower = name.lower()
                if lower in _HOP_BY_HOP and not (no_body and lower == "content-length"):
                    continue
                self.send_header(name, value)
            if not no_body:
                if length is not None:
                    self.send_header("Content-Length", str(length))
                elif self.request_version != "HTTP/1.0":
                    chunked = True
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.close_connection = True  # close-delimited body
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
        except OSError as exc:
            conn.close()
            raise _ClientGone(str(exc)) from exc

        if no_body:
            self._finish_upstream(conn, response, drain=True)
            if mid_body_reset:
                self._reset_connection()
            return
        budget = (length // 2 if length is not None else None) if mid_body_reset else None
        sent = 0
        while True:
            try:
                data = response.read1(_CHUNK)
            except (OSError, http.client.HTTPException):
                # The upstream broke off mid-body; the client can only be cut off too.
                conn.close()
                self.server.state.count("upstream_errors")
                self._reset_connection()
                return
            if mid_body_reset and budget is not None and sent + len(data) >= budget:
                data = data[: budget - sent]
            if data:
                try:
                    self._write(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
                except _ClientGone:
                    conn.close()
                    raise
                sent += len(data)
            if mid_body_reset and (budget is None or sent >= budget):
                conn.close()  # its response is unread; never pool it
                self._reset_connection()
                return
            if not data:
                break
        if chunked:
            self._write(b"0\r\n\r\n")
        self._finish_upstream(conn, response, drain=False)

    # BaseHTTPRequestHandler dispatches on do_<METHOD>; other methods get its 501.
    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = _handle

    def _send_plain(self, status: int, text: str) -> None:
        body = text.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
        except OSError as exc:
            raise _ClientGone(str(exc)) from exc
        if self.command != "HEAD":
            self._write(body)


def _serve(
    upstream: str, host: str, port: int, latency_ms: float, seed: int, verbose: bool
) -> None:
    server = _ProxyServer((host, port), _State(latency_ms, seed), upstream)
    server.verbose = verbose
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    exit_with_parent()
    announce_ready(host, int(server.server_address[1]))
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fault-injecting reverse HTTP proxy for tests.")
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:9000")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (announced)")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    _serve(args.upstream, args.host, args.port, args.latency_ms, args.seed, args.verbose)


# --------------------------------------------------------------------------- test-side handle


class FaultProxy:
    """Handle on a fault proxy subprocess in front of ``upstream``; a context manager.

    Rules take ``count`` (the next N matching requests), ``fraction`` (a seeded-random share of
    matching requests; with ``count`` too, at most N of them), or neither (every matching
    request until :meth:`clear`); ``methods`` and ``path_regex`` (searched in the request
    target, query included) narrow what matches.
    """

    def __init__(
        self,
        upstream: str,
        port: int = 0,
        latency_ms: float = 0,
        *,
        host: str = "127.0.0.1",
        seed: int = 0,
        start_timeout: float = 30.0,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.host = host
        self.port = port
        self.latency_ms = latency_ms
        self.initial_seed = seed
        self.start_timeout = start_timeout
        self._server: ServerProcess | None = None

    @property
    def endpoint(self) -> str:
        if self._server is None or self._server.port is None:
            raise RuntimeError("FaultProxy is not started")
        return f"http://{self.host}:{self._server.port}"

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("FaultProxy already started")
        args = [
            "--upstream",
            self.upstream,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--latency-ms",
            repr(float(self.latency_ms)),
            "--seed",
            str(self.initial_seed),
        ]
        server = ServerProcess(__name__, args, name=f"fault proxy -> {self.upstream}")
        server.start(timeout=self.start_timeout, host=self.host)
        self._server = server
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- control

    def _call(self, action: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(payload or {}).encode()
        request = urllib.request.Request(
            f"{self.endpoint}{CONTROL_PREFIX}{action}",
            data=data,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as exc:
            raise FaultProxyError(f"{action}: {exc.read().decode(errors='replace')}") from exc

    @staticmethod
    def _filters(
        count: int | None,
        fraction: float | None,
        methods: Sequence[str] | None,
        path_regex: str | None,
    ) -> dict[str, Any]:
        return {
            "count": count,
            "fraction": fraction,
            "methods": list(methods) if methods is not None else None,
            "path_regex": path_regex,
        }

    def fail(
        self,
        status: int,
        count: int | None = None,
        fraction: float | None = None,
        methods: Sequence[str] | None = None,
        path_regex: str | None = None,
        after_upstream: bool = False,
    ) -> None:
        """Answer ``status`` with an upstream-shaped error body.

        ``after_upstream=True`` forwards the request first (the upstream applies it) and then
        replaces the answer: "the write succeeded but I was told it failed".
        """
        self._call(
            "fail",
            {
                "status": status,
                "after_upstream": after_upstream,
                **self._filters(count, fraction, methods, path_regex),
            },
        )

    def reset(
        self,
        count: int | None = None,
        fraction: float | None = None,
        when: ResetWhen = "before",
        methods: Sequence[str] | None = None,
        path_regex: str | None = None,
    ) -> None:
        """Abort the client connection (RST) before forwarding, after the upstream applied
        the request, or halfway through the response body (``"mid_body"``)."""
        self._call("reset", {"when": when, **self._filters(count, fraction, methods, path_regex)})

    def stall(
        self,
        seconds: float,
        count: int | None = None,
        fraction: float | None = None,
        methods: Sequence[str] | None = None,
        path_regex: str | None = None,
    ) -> None:
        """Hold matching requests for ``seconds`` before anything else (``clear()`` frees
        them early)."""
        self._call(
            "stall", {"seconds": seconds, **self._filters(count, fraction, methods, path_regex)}
        )

    def latency(self, ms: float, jitter_ms: float = 0) -> None:
        """Delay every request by ``ms`` ± up to ``jitter_ms`` (never below zero)."""
        self._call("latency", {"ms": ms, "jitter_ms": jitter_ms})

    def outage(self, seconds: float) -> None:
        """Answer 503 to every request for ``seconds`` from now."""
        self._call("outage", {"seconds": seconds})

    def clear(self) -> None:
        """Drop all rules and any outage, set latency back to the start value (``latency_ms``),
        and release stalled requests."""
        self._call("clear")

    def seed(self, n: int) -> None:
        """Restart the random sequence deciding which requests a ``fraction`` hits."""
        self._call("seed", {"seed": n})

    def stats(self) -> dict[str, Any]:
        """Counters since start or :meth:`reset_stats`: ``total``, ``by_method``, ``faults``
        (by kind: fail, fail_after, reset_before, reset_after, reset_mid_body, stall,
        outage), ``forwarded`` (reached the upstream), ``delayed`` (got added latency),
        ``connections`` (client connections that carried a request), ``client_disconnects``,
        ``upstream_errors``, ``in_flight``. Control requests are not counted."""
        return self._call("stats")

    def reset_stats(self) -> None:
        self._call("stats/reset")


if __name__ == "__main__":
    main()
