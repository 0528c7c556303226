#!/usr/bin/env python3
"""Run the hub contract (shared/design/hub-contract.md) with a SignalR client from PyPI.

    python contract.py CLIENT URL TRANSPORT PROTOCOL [--reconnect] [--stateful]

CLIENT is signalrcore | pysignalr | aiosignalr, TRANSPORT is ws | sse | lp and PROTOCOL is
json | messagepack. URL is the hub URL the test server prints (http://127.0.0.1:PORT/hub).

Prints exactly one JSON line on stdout:

    {"client", "transport", "protocol", "steps": {name: "ok" | "<error>" | "skipped: ..."},
     "passed", "failed", "skipped"}

and exits 0 when no step failed, 1 when one did, 3 when the client cannot do the combination
at all (then the only step is "start": "unsupported: <why>"). Everything else (library logs,
step markers, frame dumps) goes to stderr.

--reconnect turns on the library's automatic reconnect and adds the step "Reconnect" (AbortMe,
then the client must come back by itself and Add must work). --stateful turns on the library's
stateful reconnect and adds "StatefulReconnect" (the server must run with
--stateful-reconnect).

Environment:
    SIGNALR_PY_DUMP=1    hex-dump every frame the client sends, to stderr
    SIGNALR_PY_LOG=DEBUG level of the libraries' logging (default INFO)

Each step has its own 5 s timeout and the whole run a hard 60 s limit; the process ends with
os._exit so that no thread a library left behind can keep it alive.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections import defaultdict

STEP_TIMEOUT = 5.0
OVERALL_TIMEOUT = 60.0
HEALTH_TIMEOUT = 2.0

TRANSPORT_NAMES = {"ws": "WebSockets", "sse": "ServerSentEvents", "lp": "LongPolling"}

log = logging.getLogger("contract")


class HubError(Exception):
    """The server completed an invocation with an error."""


class Skip(Exception):
    """The library cannot express this step."""


class CheckFailed(Exception):
    """A result was not what the contract says."""


def expect(actual, wanted, what):
    if actual != wanted:
        raise CheckFailed(f"{what} returned {actual!r}, expected {wanted!r}")


# --------------------------------------------------------------------------------------------
# Report: one JSON line, printed once, then os._exit
# --------------------------------------------------------------------------------------------


class Report:
    def __init__(self, client, transport, protocol):
        self.client = client
        self.transport = transport
        self.protocol = protocol
        self.steps = {}
        self.planned = []  # the step names this run means to go through
        self.current = None
        self._lock = threading.Lock()

    def begin(self, name):
        self.current = name
        print(f"[contract] step {name}", file=sys.stderr, flush=True)

    def set(self, name, result):
        self.steps[name] = result
        self.current = None
        print(f"[contract] step {name}: {result}", file=sys.stderr, flush=True)

    def emit(self, code=None):
        """Print the report and end the process (never returns)."""
        if not self._lock.acquire(blocking=False):
            # Another thread is already printing; it ends the process.
            time.sleep(10)
            os._exit(1)
        passed = sum(1 for r in self.steps.values() if r == "ok")
        skipped = sum(1 for r in self.steps.values() if r.startswith("skipped:"))
        unsupported = any(r.startswith("unsupported:") for r in self.steps.values())
        failed = 0 if unsupported else len(self.steps) - passed - skipped
        line = json.dumps(
            {
                "client": self.client,
                "transport": self.transport,
                "protocol": self.protocol,
                "steps": self.steps,
                "passed": passed,
                "failed": failed,
                "skipped": skipped,
            },
            ensure_ascii=False,
        )
        if code is None:
            code = 3 if unsupported else (0 if failed == 0 else 1)
        sys.stderr.flush()
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        os._exit(code)


def start_watchdog(report):
    def overall_timeout():
        name = report.current or "run"
        report.steps[name] = f"timeout: the whole run passed its {OVERALL_TIMEOUT:.0f} s limit"
        for later in report.planned:
            report.steps.setdefault(later, f"not run: the whole run passed its {OVERALL_TIMEOUT:.0f} s limit")
        report.emit(1)

    timer = threading.Timer(OVERALL_TIMEOUT, overall_timeout)
    timer.daemon = True
    timer.start()


# --------------------------------------------------------------------------------------------
# SIGNALR_PY_DUMP=1: hex-dump the frames a library hands to its socket / HTTP client
# --------------------------------------------------------------------------------------------


def hexdump(label, data, extra=""):
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    kind = "text" if isinstance(data, str) else "binary"
    shown = raw[:4096]
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in shown)
    more = f" (first {len(shown)} shown)" if len(shown) < len(raw) else ""
    print(
        f"[dump] {label}{extra} {kind} {len(raw)} bytes{more}: {shown.hex(' ')} | {text}",
        file=sys.stderr,
        flush=True,
    )


def wrap_send(cls, label):
    """Replace cls.send(self, data, ...) by one that dumps data first."""
    original = cls.send

    def extra(args, kwargs):
        parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
        return f" ({', '.join(parts)})" if parts else ""

    if inspect.iscoroutinefunction(original):

        async def send(self, data, *args, **kwargs):
            hexdump(label, data, extra(args, kwargs))
            return await original(self, data, *args, **kwargs)

    else:

        def send(self, data, *args, **kwargs):
            hexdump(label, data, extra(args, kwargs))
            return original(self, data, *args, **kwargs)

    cls.send = send


def install_dump(client):
    if client == "signalrcore":
        from signalrcore.transport.long_polling.long_polling_client import (
            LongPollingBaseClient,
        )
        from signalrcore.transport.sse.sse_client import SSEClient
        from signalrcore.transport.websockets.websocket_client import WebSocketClient

        wrap_send(WebSocketClient, "signalrcore ws frame")
        wrap_send(SSEClient, "signalrcore sse POST body")
        wrap_send(LongPollingBaseClient, "signalrcore lp POST body")
    elif client == "pysignalr":
        from websockets.asyncio.connection import Connection

        wrap_send(Connection, "pysignalr ws frame")
    elif client == "aiosignalr":
        from aiosignalr.client.transports import LongPollingTransport, ServerSentEventsTransport
        from aiosignalr.transport.websocket import WebSocketTransport

        wrap_send(WebSocketTransport, "aiosignalr ws frame")
        wrap_send(ServerSentEventsTransport, "aiosignalr sse POST body")
        wrap_send(LongPollingTransport, "aiosignalr lp POST body")


# --------------------------------------------------------------------------------------------
# Adapters: one per library, all with the same small interface
# --------------------------------------------------------------------------------------------


class Adapter:
    """start, invoke, send, on, stream, upload, stop, plus what the library can do.

    Handlers given to on() take the server's arguments positionally and are called on the
    event loop; they must be registered before start(). `reconnected` is set each time the
    library reports that it reconnected by itself.
    """

    name = "?"
    client_results = False  # a handler's return value goes back to the server (AskClient)
    uploads = False  # client-to-server streams
    upload_result = False  # the upload's return value reaches the caller
    stream_cancel = False  # a server-to-client stream can be cancelled
    auto_reconnect = False  # the library reconnects by itself after a drop
    stateful_reconnect = False  # the library resumes the same connection after a drop

    @classmethod
    def unsupported(cls, transport, protocol):
        """Why the library cannot do this combination at all, or None."""
        return None

    def __init__(self, transport, protocol, reconnect=False, stateful=False):
        self.transport = transport
        self.protocol = protocol
        self.reconnect = reconnect
        self.stateful = stateful
        self.handlers = {}
        self.reconnected = asyncio.Event()

    def on(self, method, handler):
        self.handlers[method] = handler

    async def start(self, url):
        raise NotImplementedError

    async def invoke(self, method, *args):
        raise NotImplementedError

    async def send(self, method, *args):
        raise NotImplementedError

    async def stream(self, method, *args, take=None):
        """The items of a server-to-client stream; with take, cancel after that many."""
        raise NotImplementedError

    async def upload(self, method, items):
        """Invoke method with one client-to-server stream of items; its result if visible."""
        raise NotImplementedError

    async def stop(self):
        raise NotImplementedError


def settle(future, result=None, error=None):
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SignalrcoreAdapter(Adapter):
    """signalrcore: threads and callbacks; blocking calls run in worker threads."""

    name = "signalrcore"
    uploads = True
    auto_reconnect = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.conn = None
        self.loop = None
        self.pending = {}  # invocation id -> future
        self.opened = asyncio.Event()

    def _soon(self, fn, *args):
        """Run fn(*args) on the event loop (signalrcore calls back on its own threads)."""
        self.loop.call_soon_threadsafe(fn, *args)

    async def start(self, url):
        from signalrcore.hub_connection_builder import HubConnectionBuilder
        from signalrcore.protocol.json_hub_protocol import JsonHubProtocol
        from signalrcore.protocol.messagepack_protocol import MessagePackHubProtocol
        from signalrcore.types import HttpTransportType

        self.loop = asyncio.get_running_loop()
        transport = {
            "ws": HttpTransportType.web_sockets,
            "sse": HttpTransportType.server_sent_events,
            "lp": HttpTransportType.long_polling,
        }[self.transport]
        protocol = MessagePackHubProtocol() if self.protocol == "messagepack" else JsonHubProtocol()
        builder = (
            HubConnectionBuilder()
            .with_url(url, options={"transport": transport})
            .with_hub_protocol(protocol)
        )
        if self.reconnect:
            builder = builder.with_automatic_reconnect(
                {"type": "raw", "keep_alive_interval": 10, "reconnect_interval": 1, "max_attempts": 5}
            )
        conn = builder.build()
        conn.on_open(lambda: self._soon(self.opened.set))
        conn.on_reconnect(lambda: self._soon(self.reconnected.set))
        conn.on_close(lambda: self._soon(self._on_close))
        conn.on_error(lambda message: self._soon(self._on_error, message))
        for method, handler in self.handlers.items():
            conn.on(method, lambda args, handler=handler: self._soon(handler, *args))
        self.conn = conn
        await asyncio.to_thread(conn.start)
        await self.opened.wait()

    def _on_close(self):
        for future in self.pending.values():
            settle(future, error=ConnectionError("signalrcore reported the connection closed"))
        self.pending.clear()

    def _on_error(self, message):
        # on_error gets every completion that carries an error (invocations and streams).
        future = self.pending.pop(getattr(message, "invocation_id", None), None)
        if future is not None:
            settle(future, error=HubError(message.error))
        else:
            log.warning("signalrcore on_error without a pending invocation: %r", message)

    async def invoke(self, method, *args):
        invocation_id = str(uuid.uuid4())
        future = self.loop.create_future()
        self.pending[invocation_id] = future

        def completed(message):
            self.pending.pop(invocation_id, None)
            self._soon(settle, future, message.result)

        try:
            await asyncio.to_thread(self.conn.invoke, method, list(args), completed, invocation_id)
            return await future
        finally:
            self.pending.pop(invocation_id, None)

    async def send(self, method, *args):
        # signalrcore has no non-blocking invocation; send() is invoke() without a callback.
        await asyncio.to_thread(self.conn.send, method, list(args))

    async def stream(self, method, *args, take=None):
        if take is not None:
            raise Skip("signalrcore has no stream cancel")
        items = []
        future = self.loop.create_future()

        def begin():
            handler = self.conn.stream(method, list(args))
            self.pending[handler.invocation_id] = future
            handler.subscribe(
                {
                    "next": lambda item: self._soon(items.append, item),
                    "complete": lambda message: self._soon(settle, future, None),
                    "error": lambda message: self._soon(
                        settle, future, None, HubError(f"stream error: {message!r}")
                    ),
                }
            )
            return handler

        handler = await asyncio.to_thread(begin)
        try:
            await future
        finally:
            self.pending.pop(handler.invocation_id, None)
        return items

    async def upload(self, method, items):
        from signalrcore.subject import Subject

        subject = Subject()
        await asyncio.to_thread(self.conn.send, method, subject)
        for item in items:
            await asyncio.to_thread(subject.next, item)
        await asyncio.to_thread(subject.complete)
        return None  # the upload is sent without an invocation id: no result comes back

    async def stop(self):
        if self.conn is not None:
            await asyncio.to_thread(self.conn.stop)


class PysignalrAdapter(Adapter):
    """pysignalr: asyncio, WebSockets only; run() is the connection's whole life."""

    name = "pysignalr"
    client_results = True
    uploads = True
    auto_reconnect = True  # its connect loop reconnects by itself; nothing to turn on

    @classmethod
    def unsupported(cls, transport, protocol):
        if transport != "ws":
            return "pysignalr implements only the WebSockets transport"
        return None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.client = None
        self.task = None
        self.opened = asyncio.Event()
        self.opens = 0

    async def start(self, url):
        from pysignalr.client import SignalRClient
        from pysignalr.protocol.json import JSONProtocol
        from pysignalr.protocol.messagepack import MessagepackProtocol

        protocol = MessagepackProtocol() if self.protocol == "messagepack" else JSONProtocol()
        client = SignalRClient(url, protocol=protocol)

        async def on_open():
            self.opens += 1
            self.opened.set()
            if self.opens > 1:
                self.reconnected.set()

        async def on_close():
            log.info("pysignalr on_close")

        async def on_error(message):
            log.info("pysignalr on_error: %r", message)

        client.on_open(on_open)
        client.on_close(on_close)
        client.on_error(on_error)
        for method, handler in self.handlers.items():

            async def callback(args, handler=handler):
                return handler(*args)

            client.on(method, callback)
        self.client = client
        self.task = asyncio.create_task(client.run())
        await self._until(self.opened.wait())

    async def _until(self, awaitable):
        """Await awaitable, or fail as soon as run() ends (pysignalr's connection is gone)."""
        waiter = asyncio.ensure_future(awaitable)
        done, _ = await asyncio.wait({waiter, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if waiter in done:
            return waiter.result()
        waiter.cancel()
        error = self.task.exception() if not self.task.cancelled() else None
        raise ConnectionError(f"pysignalr run() ended: {error!r}")

    async def invoke(self, method, *args):
        future = asyncio.get_running_loop().create_future()

        async def completed(message):
            if message.error:
                settle(future, error=HubError(message.error))
            else:
                settle(future, message.result)

        await self._until(self.client.send(method, list(args), on_invocation=completed))
        return await self._until(future)

    async def send(self, method, *args):
        await self._until(self.client.send(method, list(args)))

    async def stream(self, method, *args, take=None):
        if take is not None:
            raise Skip("pysignalr has no stream cancel")
        items = []
        future = asyncio.get_running_loop().create_future()

        async def on_next(item):
            items.append(item)

        async def on_complete(message):
            settle(future, None)

        async def on_error(message):
            settle(future, error=HubError(getattr(message, "error", None) or repr(message)))

        await self._until(
            self.client.stream(method, list(args), on_next=on_next, on_complete=on_complete, on_error=on_error)
        )
        await self._until(future)
        return items

    async def upload(self, method, items):
        async def go():
            async with self.client.client_stream(method) as stream:
                for item in items:
                    await stream.send(item)

        await self._until(go())
        return None  # client_stream() has no result

    async def stop(self):
        # pysignalr has no stop(): its README cancels run().
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task


class AiosignalrAdapter(Adapter):
    """aiosignalr: asyncio, every transport and protocol, uploads, client results."""

    name = "aiosignalr"
    client_results = True
    uploads = True
    upload_result = True
    stream_cancel = True
    auto_reconnect = True
    stateful_reconnect = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.conn = None

    async def start(self, url):
        from aiosignalr.client import DefaultRetryPolicy, HubConnection

        conn = HubConnection(protocol=self.protocol)
        if self.reconnect:
            conn.with_retry_policy(DefaultRetryPolicy())
        if self.stateful:
            conn.with_stateful_reconnect()
        conn.on_reconnected = self.reconnected.set
        conn.on_close = lambda error: log.info("aiosignalr on_close: %r", error)
        for method, handler in self.handlers.items():
            conn.on(method, handler)
        self.conn = conn
        await conn.start(url, transports={TRANSPORT_NAMES[self.transport]})

    async def invoke(self, method, *args):
        from aiosignalr import HubException

        try:
            return await self.conn.invoke(method, *args)
        except HubException as error:
            raise HubError(str(error)) from error

    async def send(self, method, *args):
        await self.conn.send(method, *args)

    async def stream(self, method, *args, take=None):
        from aiosignalr import HubException

        items = []
        try:
            async with contextlib.aclosing(await self.conn.stream(method, *args)) as iterator:
                async for item in iterator:
                    items.append(item)
                    if take is not None and len(items) >= take:
                        break  # leaving the block closes the iterator: it sends CancelInvocation
        except HubException as error:
            raise HubError(str(error)) from error
        return items

    async def upload(self, method, items):
        from aiosignalr import HubException

        try:
            async with self.conn.client_stream(method) as stream:
                for item in items:
                    await stream.send_item(item)
        except HubException as error:
            raise HubError(str(error)) from error
        return stream.result

    async def stop(self):
        if self.conn is not None:
            await self.conn.stop()


ADAPTERS = {
    "signalrcore": SignalrcoreAdapter,
    "pysignalr": PysignalrAdapter,
    "aiosignalr": AiosignalrAdapter,
}


# --------------------------------------------------------------------------------------------
# A session: an adapter, the handlers every step relies on, what they received
# --------------------------------------------------------------------------------------------


class Session:
    def __init__(self, adapter_cls, args):
        self.adapter_cls = adapter_cls
        self.args = args
        self.a = None

    async def connect(self):
        """A new connection, with fresh inboxes."""
        self.queues = defaultdict(asyncio.Queue)  # method -> payloads the server sent
        self.seq = []
        self.welcome_ids = []
        self.welcomed = asyncio.Event()
        a = self.adapter_cls(
            self.args.transport, self.args.protocol, reconnect=self.args.reconnect, stateful=self.args.stateful
        )
        a.on("welcome", self._welcome)
        a.on("seq", self.seq.append)
        for method in ("toCaller", "bcast", "grp"):
            a.on(method, self.queues[method].put_nowait)
        if a.client_results:
            a.on("ask", lambda x: x * 2)
        self.a = a
        await a.start(self.args.url)

    def _welcome(self, connection_id):
        self.welcome_ids.append(connection_id)
        self.welcomed.set()

    async def received(self, method):
        return await self.queues[method].get()

    async def healthy(self):
        try:
            return await asyncio.wait_for(self.a.invoke("Add", 1, 1), HEALTH_TIMEOUT) == 2
        except Exception:
            return False

    async def stop(self):
        if self.a is not None:
            await self.a.stop()


# --------------------------------------------------------------------------------------------
# The steps
# --------------------------------------------------------------------------------------------

ECHO_VALUES = [
    "héllo ☃ with a \u001e record separator",
    42,
    -1.5,
    True,
    None,
    [1, "two", [3.25, None]],
    {"a": 1, "b": [True, False], "c": {"d": "e"}},
]


async def step_welcome(s):
    await s.welcomed.wait()
    connection_id = s.welcome_ids[-1]
    if not isinstance(connection_id, str) or not connection_id:
        raise CheckFailed(f"welcome carried {connection_id!r}, expected a connection id")


async def step_echo(s):
    for value in ECHO_VALUES:
        expect(await s.a.invoke("Echo", value), value, f"Echo({value!r})")


async def step_add(s):
    expect(await s.a.invoke("Add", 2, 3), 5, "Add(2, 3)")
    expect(await s.a.invoke("Add", 2**40, -7), 2**40 - 7, "Add(2**40, -7)")


async def step_counter(s):
    expect(await s.a.stream("Counter", 5, 10), [0, 1, 2, 3, 4], "Counter(5, 10)")


async def step_counter_cancel(s):
    if not s.a.stream_cancel:
        raise Skip(f"{s.a.name} has no stream cancel")
    expect(await s.a.stream("Counter", 100, 50, take=3), [0, 1, 2], "Counter(100, 50) cancelled after 3")
    expect(await s.a.invoke("Add", 1, 2), 3, "Add(1, 2) after the cancel")


async def step_sum(s):
    if not s.a.uploads:
        raise Skip(f"{s.a.name} has no uploads")
    items = list(range(1, 11))
    result = await s.a.upload("Sum", items)
    if s.a.upload_result:
        expect(result, 55, "Sum(1..10)")
        return
    # The upload's result cannot be seen: at least the connection must have taken it.
    try:
        expect(await asyncio.wait_for(s.a.invoke("Add", 1, 2), HEALTH_TIMEOUT), 3, "Add(1, 2) after the upload")
    except Exception as error:
        raise CheckFailed(f"the connection did not survive the upload: {describe(error)}") from error
    raise Skip(
        f"{s.a.name} has no upload result (its upload is a non-blocking invocation; "
        "the 10 items were sent and the connection stayed up)"
    )


async def step_send_to_caller(s):
    payload = {"k": "v", "n": [1, 2]}
    expect(await s.a.invoke("SendToCaller", "toCaller", payload), "sent", "SendToCaller")
    expect(await s.received("toCaller"), payload, "toCaller(payload)")


async def step_broadcast(s):
    count = await s.a.invoke("Broadcast", "bcast", "hello all")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise CheckFailed(f"Broadcast returned {count!r}, expected a count of connections >= 1")
    expect(await s.received("bcast"), "hello all", "bcast(payload)")


async def step_groups(s):
    group = f"g-{uuid.uuid4().hex[:8]}"
    expect(await s.a.invoke("JoinGroup", group), group, "JoinGroup")
    expect(await s.a.invoke("SendToGroup", group, "grp", "to the group"), "sent", "SendToGroup")
    expect(await s.received("grp"), "to the group", "grp(payload)")
    expect(await s.a.invoke("LeaveGroup", group), group, "LeaveGroup")
    expect(await s.a.invoke("SendToGroup", group, "grp", "after leaving"), "sent", "SendToGroup after leaving")
    with contextlib.suppress(asyncio.TimeoutError):
        late = await asyncio.wait_for(s.received("grp"), 0.3)
        raise CheckFailed(f"grp({late!r}) arrived after LeaveGroup")


async def step_fail(s):
    try:
        result = await s.a.invoke("Fail", "boom from the contract")
    except HubError as error:
        if "boom from the contract" not in str(error):
            raise CheckFailed(f"Fail's error {str(error)!r} does not carry the message") from error
        return
    raise CheckFailed(f"Fail returned {result!r} instead of an error")


async def step_unknown_method(s):
    try:
        result = await s.a.invoke("NoSuchMethod", 1)
    except HubError as error:
        if "NoSuchMethod" not in str(error):
            raise CheckFailed(f"the error {str(error)!r} does not name the method") from error
    else:
        raise CheckFailed(f"NoSuchMethod returned {result!r} instead of an error")
    expect(await s.a.invoke("Add", 1, 2), 3, "Add(1, 2) after the unknown method")


async def step_ask_client(s):
    if not s.a.client_results:
        raise Skip(f"{s.a.name} has no client results")
    expect(await s.a.invoke("AskClient", "ask", 21), 42, "AskClient('ask', 21)")


async def step_no_result(s):
    expect(await s.a.invoke("NoResult"), None, "NoResult")


async def step_get_connection_id(s):
    connection_id = await s.a.invoke("GetConnectionId")
    if not isinstance(connection_id, str) or not connection_id:
        raise CheckFailed(f"GetConnectionId returned {connection_id!r}")
    if s.welcome_ids and s.welcome_ids[-1] != connection_id:
        raise CheckFailed(f"GetConnectionId returned {connection_id!r} but welcome said {s.welcome_ids[-1]!r}")


async def step_get_server_name(s):
    name = await s.a.invoke("GetServerName")
    if not isinstance(name, str):
        raise CheckFailed(f"GetServerName returned {name!r}, expected a string")


def check_sequence(seen, count):
    if seen == list(range(count)):
        return
    missing = sorted(set(range(count)) - set(seen))
    duplicates = sorted({i for i in seen if seen.count(i) > 1})
    disorder = next((k for k in range(1, len(seen)) if seen[k] < seen[k - 1]), None)
    raise CheckFailed(
        f"seq: {len(seen)} of {count} received; missing {missing[:10]}, duplicates {duplicates[:10]}, "
        f"first out of order at index {disorder}"
    )


async def wait_for_items(items, count, grace=1.0):
    """Handlers may run a little after the completion that follows them."""
    deadline = time.monotonic() + grace
    while len(items) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


async def step_sequence(s):
    s.seq.clear()
    expect(await s.a.invoke("Sequence", 100), 100, "Sequence(100)")
    await wait_for_items(s.seq, 100)
    check_sequence(list(s.seq), 100)


async def step_reconnect(s):
    if not s.a.auto_reconnect:
        raise Skip(f"{s.a.name} has no automatic reconnect")
    before = await s.a.invoke("GetConnectionId")
    s.a.reconnected.clear()
    await s.a.send("AbortMe")
    await s.a.reconnected.wait()
    expect(await s.a.invoke("Add", 1, 2), 3, "Add(1, 2) after the reconnect")
    after = await s.a.invoke("GetConnectionId")
    log.info("reconnect: connection id %s -> %s", before, after)


async def step_stateful_reconnect(s):
    if not s.a.stateful_reconnect:
        raise Skip(f"{s.a.name} has no stateful reconnect")
    before = await s.a.invoke("GetConnectionId")
    s.seq.clear()
    s.a.reconnected.clear()
    await s.a.send("AbortMe")
    # Sent while the transport drops: it must be buffered and replayed on the resumed connection.
    expect(await s.a.invoke("Sequence", 100), 100, "Sequence(100) across the drop")
    await wait_for_items(s.seq, 100)
    check_sequence(list(s.seq), 100)
    if not s.a.reconnected.is_set():
        raise CheckFailed("the transport did not drop and resume (no reconnected event)")
    expect(await s.a.invoke("GetConnectionId"), before, "GetConnectionId after the resume")


STEPS = [
    ("Welcome", step_welcome),
    ("Echo", step_echo),
    ("Add", step_add),
    ("Counter", step_counter),
    ("CounterCancel", step_counter_cancel),
    ("Sum", step_sum),
    ("SendToCaller", step_send_to_caller),
    ("Broadcast", step_broadcast),
    ("Groups", step_groups),
    ("Fail", step_fail),
    ("UnknownMethod", step_unknown_method),
    ("AskClient", step_ask_client),
    ("NoResult", step_no_result),
    ("GetConnectionId", step_get_connection_id),
    ("GetServerName", step_get_server_name),
    ("Sequence", step_sequence),
]


def describe(error):
    if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
        return f"timeout: no answer within {STEP_TIMEOUT:.0f} s"
    if isinstance(error, HubError):
        return f"hub error: {error}"
    if isinstance(error, CheckFailed):
        return str(error)
    return f"{type(error).__name__}: {error}"


async def run(args, report):
    adapter_cls = ADAPTERS[args.client]
    why = None
    if args.transport == "sse" and args.protocol == "messagepack":
        why = "Server-Sent Events carries text only, so SignalR has no SSE × MessagePack"
    why = why or adapter_cls.unsupported(args.transport, args.protocol)
    if why:
        report.set("start", f"unsupported: {why}")
        report.emit(3)

    session = Session(adapter_cls, args)
    report.begin("start")
    try:
        await asyncio.wait_for(session.connect(), STEP_TIMEOUT)
    except Exception as error:
        report.set("start", f"start failed: {describe(error)}")
        report.emit(1)
    report.current = None

    steps = list(STEPS)
    if args.reconnect:
        steps.append(("Reconnect", step_reconnect))
    if args.stateful:
        steps.append(("StatefulReconnect", step_stateful_reconnect))
    report.planned = [name for name, _ in steps]

    for name, step in steps:
        report.begin(name)
        try:
            await asyncio.wait_for(step(session), STEP_TIMEOUT)
            result = "ok"
        except Skip as skip:
            result = f"skipped: {skip}"
        except Exception as error:
            result = describe(error)
        if result != "ok" and not result.startswith("skipped:") and not await session.healthy():
            # Later steps need a working connection: start a new one rather than fail them all.
            result += " [the connection was lost; the next steps run on a new connection]"
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.stop(), HEALTH_TIMEOUT)
            try:
                await asyncio.wait_for(session.connect(), STEP_TIMEOUT)
            except Exception as error:
                report.set(name, result)
                report.set("restart", f"could not connect again: {describe(error)}")
                report.emit(1)
        report.set(name, result)

    print("[contract] stop", file=sys.stderr, flush=True)
    try:
        await asyncio.wait_for(session.stop(), STEP_TIMEOUT)
    except Exception as error:
        print(f"[contract] stop failed: {describe(error)}", file=sys.stderr, flush=True)
    report.emit()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("client", choices=sorted(ADAPTERS))
    parser.add_argument("url")
    parser.add_argument("transport", choices=sorted(TRANSPORT_NAMES))
    parser.add_argument("protocol", choices=["json", "messagepack"])
    parser.add_argument("--reconnect", action="store_true", help="add the automatic-reconnect step")
    parser.add_argument("--stateful", action="store_true", help="add the stateful-reconnect step")
    args = parser.parse_args()

    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("SIGNALR_PY_LOG", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    report = Report(args.client, args.transport, args.protocol)
    start_watchdog(report)
    if os.environ.get("SIGNALR_PY_DUMP") == "1":
        install_dump(args.client)
    try:
        asyncio.run(run(args, report))
    except BaseException as error:  # run() ends the process itself; this is a bug in it
        report.set(report.current or "run", f"driver error: {describe(error)}")
    report.emit(1)


if __name__ == "__main__":
    main()
