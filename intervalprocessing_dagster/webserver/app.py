"""The ASGI wrapper around Dagster's webserver app: sign-on verified on every request, an audit line per change.

With sign-on on (``WEBSERVER_SIGN_ON_LOAD_BALANCER_ARN`` set, as the stack sets it behind the load balancer) every
HTTP request and WebSocket connection must carry a valid ``x-amzn-oidc-data`` token (``sign_on.py``); one without is
answered 401 (a WebSocket is closed with 4401) and never reaches Dagster. The one exception is ``GET /server_info``
(Dagster's version numbers, nothing else): the load balancer's health checks go straight to the targets without a
sign-in. Without sign-on (``dagster dev``-style local use, SSM port forwarding) the person is the OS user the
webserver runs as, and the audit lines say so (``identity: os-user``).

Changes are read where Dagster reads them: a GraphQL request's document and variables (JSON body, GET query string,
``application/graphql`` body), and the REST endpoints that report runless asset events. A mutation is accepted only
as ``POST`` with a JSON body (what the UI sends): Dagster would also run one from a GET query string, which proxies and
browsers treat as safe to repeat. A GraphQL ``start`` over the WebSocket is only ever a subscription: a mutation
there closes the connection.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
from starlette.datastructures import Headers

from intervalprocessing_dagster.webserver.audit import (
    REST_ACTIONS,
    AuditLog,
    LaunchParamsNotVariables,
    MutationRequest,
    mutations_in,
    outcome_of,
    targets_of,
    with_launched_by,
)
from intervalprocessing_dagster.webserver.sign_on import TOKEN_HEADER, AlbTokenVerifier, Identity, SignOnError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("intervalprocessing.webserver")

HEALTH_CHECK_PATH = "/server_info"
#: Mutation responses are small; a body beyond this is passed on but not parsed for the outcome.
_MAX_CAPTURED_RESPONSE = 4 * 1024 * 1024


class AuditedWebserver:
    """Dagster's webserver ASGI app behind sign-on verification and the audit log."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        audit_log: AuditLog,
        verifier: AlbTokenVerifier | None,
        os_user: str,
        path_prefix: str = "",
    ) -> None:
        self._app = app
        self._audit = audit_log
        self._verifier = verifier
        self._os_user = os_user
        self._prefix = path_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)  # lifespan
            return
        path = scope["path"].removeprefix(self._prefix) or "/"
        if self._verifier is None:
            identity = {"who": self._os_user, "identity": "os-user"}
        elif scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and path == HEALTH_CHECK_PATH:
            await self._app(scope, receive, send)
            return
        else:
            try:
                person: Identity = await anyio.to_thread.run_sync(
                    self._verifier.verify, Headers(scope=scope).get(TOKEN_HEADER)
                )
            except SignOnError as exc:
                await self._refuse(scope, send, path, str(exc))
                return
            identity = {"who": person.who, "identity": "load-balancer", "subject": person.subject}
        if scope["type"] == "websocket":
            await self._app(scope, _without_mutations(receive, send), send)
        elif path == "/graphql":
            await self._graphql(scope, receive, send, identity)
        elif scope["method"] == "POST" and path.strip("/").split("/", 1)[0] in REST_ACTIONS:
            await self._rest_event(scope, receive, send, identity, path)
        else:
            await self._app(scope, receive, send)

    # --- GraphQL ---------------------------------------------------------------------------------------------------

    async def _graphql(self, scope: Scope, receive: Receive, send: Send, identity: dict[str, str]) -> None:
        started = time.time()
        body = await _read_body(receive)
        content_type = Headers(scope=scope).get("content-type", "")
        data = _graphql_params(scope, body, content_type)
        query, variables = data.get("query"), data.get("variables")
        if isinstance(variables, str):
            try:
                variables = json.loads(variables)
            except json.JSONDecodeError:
                variables = None  # Dagster refuses it
        # Only a document with the word "mutation" can hold one (the UI's many polling queries skip the parse).
        request = (
            mutations_in(query, variables if isinstance(variables, dict) else None, data.get("operationName"))
            if isinstance(query, str) and "mutation" in query
            else MutationRequest(None, [])
        )
        if not request.mutations:
            await self._app(scope, _replay(body, receive), send)
            return
        line = {"time": _iso(started), **identity, "client": self._client(scope)}
        if scope["method"] != "POST" or "application/json" not in content_type:
            await self._answer(send, 405, "GraphQL mutations are accepted only as POST with a JSON body")
            for mutation in request.mutations:
                self._write(
                    {
                        **line,
                        "action": mutation.action,
                        "targets": targets_of(mutation.arguments),
                        "outcome": "refused",
                        "errors": ["mutation not sent as POST application/json"],
                    }
                )
            return
        try:
            new_variables = with_launched_by(request.mutations, variables, identity["who"])
        except LaunchParamsNotVariables as exc:
            await self._answer(send, 400, str(exc))
            for mutation in request.mutations:
                self._write(
                    {
                        **line,
                        "action": mutation.action,
                        "targets": targets_of(mutation.arguments),
                        "outcome": "refused",
                        "errors": [str(exc)],
                    }
                )
            return
        new_body = json.dumps({**data, "query": request.query_with_typenames(), "variables": new_variables}).encode()

        def record(response: _CapturedResponse) -> None:
            parsed = response.json()
            for mutation in request.mutations:
                self._write(
                    {
                        **line,
                        "action": mutation.action,
                        "targets": targets_of(mutation.arguments),
                        **outcome_of(mutation, parsed),
                        "status": response.status,
                        "duration_ms": round((time.time() - started) * 1000),
                    }
                )

        await _run_recorded(self._app, _with_body_length(scope, new_body), _replay(new_body, receive), send, record)

    # --- REST endpoints for runless events -------------------------------------------------------------------------

    async def _rest_event(
        self, scope: Scope, receive: Receive, send: Send, identity: dict[str, str], path: str
    ) -> None:
        started = time.time()
        endpoint, _, asset = path.strip("/").partition("/")

        def record(response: _CapturedResponse) -> None:
            ok = response.status == 200
            parsed = response.json()
            error = parsed.get("error") if isinstance(parsed, dict) else None
            self._write(
                {
                    "time": _iso(started),
                    **identity,
                    "client": self._client(scope),
                    "action": REST_ACTIONS[endpoint],
                    "targets": {"assets": [asset]} if asset else {},
                    "outcome": "success" if ok else "error",
                    **({} if ok else {"errors": [str(error or f"HTTP {response.status}")[:300]]}),
                    "status": response.status,
                    "duration_ms": round((time.time() - started) * 1000),
                }
            )

        await _run_recorded(self._app, scope, receive, send, record)

    # --- helpers ---------------------------------------------------------------------------------------------------

    def _client(self, scope: Scope) -> str | None:
        """The client's address: behind the load balancer the last ``X-Forwarded-For`` entry (the one it appended),
        else the TCP peer."""
        peer = scope.get("client")
        if self._verifier is not None:
            forwarded = Headers(scope=scope).get("x-forwarded-for")
            if forwarded:
                return forwarded.split(",")[-1].strip()
        return peer[0] if peer else None

    async def _refuse(self, scope: Scope, send: Send, path: str, reason: str) -> None:
        log.warning("refused %s %s from %s: %s", scope.get("method", "WEBSOCKET"), path, self._client(scope), reason)
        self._write(
            {
                "time": _iso(time.time()),
                "who": None,
                "identity": "refused",
                "client": self._client(scope),
                "action": "signOnRefused",
                "targets": {"paths": [path]},
                "outcome": "refused",
                "errors": [reason],
                "status": 401,
            }
        )
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4401})
        else:
            await self._answer(send, 401, f"Sign-on required: {reason}")

    @staticmethod
    async def _answer(send: Send, status: int, text: str) -> None:
        body = text.encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _write(self, line: dict[str, Any]) -> None:
        try:
            self._audit.write(line)
        except OSError:
            # A change already made must not look failed to the person; the webserver's own log keeps the line.
            log.exception("audit line could not be written: %s", line)


class _CapturedResponse:
    """Passes the app's response on as it comes, keeping its status and (bounded) body, and calls ``before_end`` with
    itself just before the body's last part goes out: the audit line is written before the person sees the result."""

    def __init__(self, send: Send, before_end: Callable[[_CapturedResponse], None]) -> None:
        self._send = send
        self._before_end = before_end
        self.status: int | None = None
        self.recorded = False
        self._body = bytearray()

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            if len(self._body) < _MAX_CAPTURED_RESPONSE:
                self._body.extend(message.get("body", b""))
            if not message.get("more_body") and not self.recorded:
                self.recorded = True
                self._before_end(self)
        await self._send(message)

    def json(self) -> Any:
        try:
            return json.loads(self._body)
        except (ValueError, UnicodeDecodeError):
            return None


async def _run_recorded(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, record: Callable[[_CapturedResponse], None]
) -> None:
    """``app`` with its response captured and recorded; a request the app fails on is recorded too (status None)."""
    response = _CapturedResponse(send, record)
    try:
        await app(scope, receive, response)
    finally:
        if not response.recorded:
            response.recorded = True
            record(response)


async def _read_body(receive: Receive) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return bytes(body)
        body.extend(message.get("body", b""))
        if not message.get("more_body"):
            return bytes(body)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app ``body`` (already read here) first, then whatever the client sends next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _with_body_length(scope: Scope, body: bytes) -> Scope:
    headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
    return {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}


def _graphql_params(scope: Scope, body: bytes, content_type: str) -> dict[str, Any]:
    """The request's ``query``, ``variables`` and ``operationName`` from where Dagster's endpoint reads them."""
    query_string = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    if scope["method"] == "POST" and "application/json" in content_type:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return {}
        return data if isinstance(data, dict) else {}
    if scope["method"] == "POST" and "application/graphql" in content_type:
        return {"query": body.decode("utf-8", "replace")}
    return query_string


def _without_mutations(receive: Receive, send: Send) -> Receive:
    """The WebSocket's ``receive``, closing the connection instead of passing on a ``start`` that is a mutation."""

    async def checked() -> Message:
        message = await receive()
        if message["type"] == "websocket.receive" and message.get("text"):
            try:
                payload = json.loads(message["text"])
            except ValueError:
                return message
            if isinstance(payload, dict) and payload.get("type") == "start":
                data = payload.get("payload") or {}
                query = data.get("query") if isinstance(data, dict) else None
                if isinstance(query, str) and mutations_in(query, data.get("variables"), None).mutations:
                    await send({"type": "websocket.close", "code": 4400})
                    return {"type": "websocket.disconnect", "code": 4400}
        return message

    return checked


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
