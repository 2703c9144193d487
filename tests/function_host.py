"""A small stand-in for the Functions host, serving an app's HTTP functions on 127.0.0.1.

The real host (and its Durable extension) cannot run in the test environment. This one
plays their parts closely enough for a browser to use the app:

- Routing and keys come from the app's own function index (``get_function_json``): each
  HTTP function's route template, methods and auth level. A FUNCTION-level route needs the
  host's key in ``x-functions-key`` or ``?code=`` (else 401, as the host answers).
- A request becomes an ``azure.functions.HttpRequest`` and goes to the function the app
  registered (``get_user_function``); the response goes back with its status, headers and
  body, its Content-Type derived as the Python worker does.
- A durable-client binding gets the JSON the extension hands the worker, so the SDK's own
  ``DurableOrchestrationClient`` runs and talks HTTP to this host's small copy of the
  extension's RPC API (start an instance, read its status).
- Started instances run in a background thread through ``DurableDriver``: the real
  orchestrator replayed by azure-functions-durable, the app's real activities. The custom
  status is published before each activity runs, so a poller sees stems change state;
  ``gate`` can hold activities back so a test decides when each one runs.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func
from azure.durable_functions.models.utils import http_utils

from tests.orchestrators.durable_driver import DurableDriver
from tests.orchestrators.durable_history import replay

RPC_PREFIX = "durabletask-rpc"
WEBHOOK_PREFIX = "runtime/webhooks/durabletask"
Gate = Callable[[str, Any], None]


@dataclass(frozen=True)
class Segment:
    """One route-template segment: a literal, or a parameter (optional, catch-all,
    with an optional ``maxlength(n)`` constraint)."""

    literal: str | None = None
    name: str | None = None
    optional: bool = False
    catch_all: bool = False
    max_length: int | None = None


_PARAMETER = re.compile(r"^\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([^}?]*))?(\?)?\}$")


def parse_route(template: str) -> list[Segment]:
    """``"generate/{id}/files/{name}"`` -> segments (ASP.NET route template syntax)."""
    segments = []
    for part in template.strip("/").split("/"):
        if not part:
            continue
        match = _PARAMETER.match(part)
        if match is None:
            segments.append(Segment(literal=part.lower()))
            continue
        star, name, constraint, optional = match.groups()
        max_length = None
        if constraint:
            found = re.fullmatch(r"maxlength\((\d+)\)", constraint)
            max_length = int(found.group(1)) if found else None
        segments.append(
            Segment(name=name, optional=bool(optional), catch_all=bool(star), max_length=max_length)
        )
    return segments


def match_route(segments: list[Segment], parts: list[str]) -> dict[str, str] | None:
    """The route parameters when ``parts`` (decoded path segments) fit ``segments``."""
    params: dict[str, str] = {}
    for index, segment in enumerate(segments):
        if segment.catch_all:
            params[segment.name or ""] = "/".join(parts[index:])
            return params
        if index >= len(parts):
            if segment.optional:
                continue
            return None
        part = parts[index]
        if segment.literal is not None:
            if part.lower() != segment.literal:
                return None
        else:
            if segment.max_length is not None and len(part) > segment.max_length:
                return None
            params[segment.name or ""] = part
    return params if len(parts) <= len(segments) else None


@dataclass
class HttpFunction:
    """An HTTP function as the host indexed it."""

    name: str
    segments: list[Segment]
    methods: set[str]
    auth_level: str
    handler: Callable[..., Any]
    client_name: str | None  # the durable-client parameter, when bound

    @property
    def literals(self) -> int:
        return sum(1 for s in self.segments if s.literal is not None)


@dataclass
class Instance:
    """One orchestration instance this host runs."""

    name: str
    instance_id: str
    input: Any
    runtime_status: str = "Pending"
    custom_status: Any = None
    output: Any = None
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "instanceId": self.instance_id,
            "createdTime": self.created.isoformat(),
            "lastUpdatedTime": self.updated.isoformat(),
            "input": self.input,
            "output": self.output,
            "runtimeStatus": self.runtime_status,
            "customStatus": self.custom_status,
        }


class _ObservedDriver(DurableDriver):
    """``DurableDriver`` that publishes the custom status before each activity runs and
    lets ``gate`` hold the activity back."""

    def __init__(self, *args: Any, instance: Instance, gate: Gate | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._instance = instance
        self._gate = gate

    def _run_call(self, task_id: int, action: dict[str, Any]) -> None:
        self._instance.custom_status = replay(self.orchestrator, self.history).custom_status
        self._instance.runtime_status = "Running"
        self._instance.updated = datetime.now(UTC)
        if self._gate is not None:
            self._gate(action["functionName"], action["input"])
        super()._run_call(task_id, action)


class FunctionHost:
    """Serve ``app``'s HTTP functions on ``127.0.0.1`` (``url``), with ``key`` as the
    function key, running orchestrations with ``orchestrators`` (name -> generator
    function) and the app's own activities."""

    def __init__(
        self,
        app: Any,
        *,
        key: str,
        orchestrators: dict[str, Callable[..., Any]],
        gate: Gate | None = None,
    ) -> None:
        self.key = key
        self.gate = gate
        self.orchestrators = orchestrators
        self.instances: dict[str, Instance] = {}
        self.errors: list[BaseException] = []
        self.functions, self.activities = _index(app)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._server_thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{name}:{port}/"

    def start(self) -> FunctionHost:
        self._loop_thread.start()
        self._server_thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        # The SDK keeps one aiohttp session per process, bound to the loop it was made on:
        # close it with this loop, so the next host's client makes a fresh one.
        asyncio.run_coroutine_threadsafe(http_utils._close_session(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join(timeout=5)

    # -- the durable client binding and the extension's RPC API ------------------------

    def client_binding(self) -> str:
        """The JSON the extension passes for a durable-client binding."""
        base = f"{self.url}{WEBHOOK_PREFIX}/instances/INSTANCEID"
        return json.dumps(
            {
                "taskHubName": "StudioTestHub",
                "creationUrls": {
                    "createNewInstancePostUri": f"{self.url}{WEBHOOK_PREFIX}/orchestrators/"
                    "{functionName}[/{instanceId}]",
                },
                "managementUrls": {
                    "id": "INSTANCEID",
                    "statusQueryGetUri": base,
                    "sendEventPostUri": f"{base}/raiseEvent/{{eventName}}",
                    "terminatePostUri": f"{base}/terminate?reason={{text}}",
                    "purgeHistoryDeleteUri": base,
                    "restartPostUri": f"{base}/restart",
                    "suspendPostUri": f"{base}/suspend?reason={{text}}",
                    "resumePostUri": f"{base}/resume?reason={{text}}",
                },
                "baseUrl": f"{self.url}{WEBHOOK_PREFIX}",
                "requiredQueryStringParameters": "",
                "rpcBaseUrl": f"{self.url}{RPC_PREFIX}/",
            }
        )

    def start_instance(self, name: str, instance_id: str, client_input: Any) -> tuple[int, Any]:
        with self._lock:
            existing = self.instances.get(instance_id)
            if existing is not None and existing.runtime_status in {"Pending", "Running"}:
                return 409, f"An Orchestration instance with the status {existing.runtime_status} "
            instance = Instance(name, instance_id, client_input)
            self.instances[instance_id] = instance
        threading.Thread(target=self._run, args=(instance,), daemon=True).start()
        return 202, {"id": instance_id}

    def _run(self, instance: Instance) -> None:
        driver = _ObservedDriver(
            self.orchestrators[instance.name],
            instance.input,
            self.activities,
            name=instance.name,
            instance_id=instance.instance_id,
            instance=instance,
            gate=self.gate,
        )
        try:
            last = driver.run()
        except BaseException as error:  # a broken test harness must show, not hang
            self.errors.append(error)
            instance.runtime_status = "Failed"
            instance.output = repr(error)
            raise
        instance.custom_status = last.custom_status
        instance.output = last.output if last.is_done else last.error
        instance.runtime_status = "Completed" if last.is_done else "Failed"
        instance.updated = datetime.now(UTC)

    def status(self, instance_id: str) -> tuple[int, Any]:
        instance = self.instances.get(instance_id)
        if instance is None:
            return 404, None
        code = {"Completed": 200, "Failed": 400}.get(instance.runtime_status, 202)
        return code, instance.to_json()

    # -- HTTP functions -----------------------------------------------------------------

    def route(self, method: str, parts: list[str]) -> tuple[HttpFunction, dict[str, str]] | None:
        found = [
            (function, params)
            for function in self.functions
            if method in function.methods
            and (params := match_route(function.segments, parts)) is not None
        ]
        # Literal segments win over parameters, as in ASP.NET routing.
        found.sort(key=lambda item: -item[0].literals)
        return found[0] if found else None

    def call(self, function: HttpFunction, request: func.HttpRequest) -> func.HttpResponse:
        kwargs: dict[str, Any] = {"req": request}
        if function.client_name:
            kwargs[function.client_name] = self.client_binding()
        result = function.handler(**kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run_coroutine_threadsafe(_awaited(result), self._loop).result(600)
        return result


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _index(app: Any) -> tuple[list[HttpFunction], dict[str, Callable[[Any], Any]]]:
    """HTTP functions and activities (by activity name) from the app's function index."""
    functions: list[HttpFunction] = []
    activities: dict[str, Callable[[Any], Any]] = {}
    for function in app.get_functions():
        bindings = json.loads(function.get_function_json())["bindings"]
        by_type = {b["type"]: b for b in bindings}
        handler = function.get_user_function()
        if "activityTrigger" in by_type:
            activities[by_type["activityTrigger"]["activity"]] = handler
        trigger = by_type.get("httpTrigger")
        if trigger is None:
            continue
        client = by_type.get("durableClient")
        functions.append(
            HttpFunction(
                name=function.get_function_name(),
                segments=parse_route(trigger.get("route") or function.get_function_name()),
                methods={m.upper() for m in trigger.get("methods") or ["GET", "POST"]},
                auth_level=str(trigger.get("authLevel", "FUNCTION")).upper(),
                handler=handler,
                client_name=client["name"] if client else None,
            )
        )
    return functions, activities


def _make_handler(host: FunctionHost) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() not in {"content-length", "connection", "transfer-encoding"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, value: Any) -> None:
            body = b"" if value is None else json.dumps(value).encode()
            self._reply(status, body, {"Content-Type": "application/json"})

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _handle(self) -> None:
            url = urlsplit(self.path)
            parts = [unquote(p) for p in url.path.split("/") if p]
            query = dict(parse_qsl(url.query, keep_blank_values=True))
            body = self._body()
            if parts[:1] == [RPC_PREFIX]:
                self._rpc(parts[1:], body)
                return
            found = host.route(self.command, parts)
            if found is None:
                self._reply(404, b"", {})
                return
            function, params = found
            if function.auth_level != "ANONYMOUS":
                given = self.headers.get("x-functions-key") or query.get("code")
                if given != host.key:
                    self._reply(401, b"", {})
                    return
            request = func.HttpRequest(
                self.command,
                f"http://{self.headers.get('Host', '127.0.0.1')}{self.path}",
                headers=dict(self.headers.items()),
                params=query,
                route_params=params,
                body=body,
            )
            try:
                response = host.call(function, request)
            except Exception as error:  # noqa: BLE001 - the host answers 500 for any exception
                host.errors.append(error)
                self._reply(500, b"", {})
                return
            headers = dict(response.headers.items())
            if not any(k.lower() == "content-type" for k in headers):
                mimetype = response.mimetype or "text/plain"
                text = mimetype.startswith("text/")
                headers["Content-Type"] = (
                    f"{mimetype}; charset={response.charset}" if text else mimetype
                )
            self._reply(response.status_code, response.get_body() or b"", headers)

        def _rpc(self, parts: list[str], body: bytes) -> None:
            if self.command == "POST" and len(parts) == 3 and parts[0] == "orchestrators":
                data = json.loads(body) if body else None
                # The SDK sends the input JSON-encoded inside the JSON body, as the
                # extension expects: decode it once more.
                data = json.loads(data) if isinstance(data, str) else data
                self._json(*host.start_instance(parts[1], parts[2], data))
            elif self.command == "GET" and len(parts) == 2 and parts[0] == "instances":
                self._json(*host.status(parts[1]))
            else:
                self._json(501, f"the test host does not implement {self.command} {parts}")

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    return Handler
