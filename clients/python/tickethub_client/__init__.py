"""The official Python client of tickethub (asyncio).

``Client.subscribe()`` follows a user's notifications over the hub's WebSocket
(``/ws/notifications/``) and hands each one over exactly once, in ``seq`` order, across
reconnects and hub restarts: every connection resumes after the last seq delivered
(``?last_seq=``), anything at or below it that arrives again is dropped, and delivered seqs are
acknowledged. Tokens come from the application's provider: asked for every connection, once
per expiry when the hub warns (the new token goes on the open socket), and after the hub
refuses one; a provider that gives a refused token again stops the subscription
(``Unauthorized``) instead of reconnecting for ever.

The inbox commands go over REST with the same tokens; ``Sender`` sends notifications with an
API key and an ``Idempotency-Key``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Optional, Union

import httpx
import websockets
from websockets.asyncio.client import connect as ws_connect

__all__ = [
    "Client",
    "Sender",
    "TicketHubError",
    "Notification",
    "Connected",
    "Delivered",
    "Replayed",
    "Truncated",
    "InboxChange",
    "Renewed",
    "Disconnected",
    "Warning",
    "Unauthorized",
    "token_expiry",
]

#: Why the client asks for a token: a new connection (a cached token that is still valid will
#: do), the held one runs out within 30 s, or the hub refused the last one.
CONNECT, EXPIRING, REFUSED = "connect", "expiring", "refused"

TokenProvider = Callable[[str], Awaitable[str]]


class TicketHubError(Exception):
    """A REST answer with an error status (``code`` is the status, ``"404"``), or
    ``token_refused`` (the hub refused a token and the provider gave it again)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Notification:
    """A notification as the hub pushes it (seed 001's shape)."""

    id: int
    seq: int
    notification_type: str
    title: str
    message: str
    ticket: Optional[dict]
    data: Any
    action_url: Optional[str]
    is_read: bool
    timestamp: str
    replayed: bool

    @staticmethod
    def from_frame(frame: dict) -> "Notification":
        return Notification(
            id=frame["id"],
            seq=frame["seq"],
            notification_type=frame.get("notification_type", ""),
            title=frame.get("title", ""),
            message=frame.get("message", ""),
            ticket=frame.get("ticket"),
            data=frame.get("data"),
            action_url=frame.get("action_url"),
            is_read=bool(frame.get("is_read", False)),
            timestamp=frame.get("timestamp", ""),
            replayed=bool(frame.get("replayed", False)),
        )


@dataclass(frozen=True)
class Connected:
    """The hub greeted a connection."""


@dataclass(frozen=True)
class Delivered:
    """A notification, once, in ``seq`` order."""

    notification: Notification


@dataclass(frozen=True)
class Replayed:
    """A connection's backlog was sent: ``count`` replayed; the hub's resume point."""

    count: int
    last_seq: Optional[int]


@dataclass(frozen=True)
class Truncated:
    """The backlog was over the hub's cap: ``remaining`` older ones were left (list them)."""

    remaining: int


@dataclass(frozen=True)
class InboxChange:
    """A change of the inbox by any client of the user: ``read``, ``unread``, ``deleted``
    (with ``id``), ``cleared`` or ``all_read`` (with ``count``)."""

    kind: str
    id: Optional[int] = None
    count: Optional[int] = None


@dataclass(frozen=True)
class Renewed:
    """The hub took a renewed token on the socket."""


@dataclass(frozen=True)
class Disconnected:
    """The connection ended; ``will_reconnect`` says whether the client tries again."""

    code: int
    reason: str
    will_reconnect: bool


@dataclass(frozen=True)
class Warning:  # noqa: A001 - the event's name in every client of the hub
    """Something the subscription survives: a provider failure, a hub error frame, a token
    given back unchanged for a renewal."""

    message: str


@dataclass(frozen=True)
class Unauthorized:
    """The hub refused a token and the provider gave it again (or one run out): the
    subscription stopped; subscribe again once the provider has a new token."""


Event = Union[
    Connected, Delivered, Replayed, Truncated, InboxChange, Renewed, Disconnected, Warning,
    Unauthorized,
]


def token_expiry(token: str) -> Optional[int]:
    """The ``exp`` claim of a JWT, in seconds since the epoch; ``None`` for anything else."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
        exp = claims.get("exp")
        return exp if isinstance(exp, int) else None
    except (IndexError, ValueError, AttributeError):
        return None


def _no_newer(new: str, held: str) -> bool:
    if new == held:
        return True
    a, b = token_expiry(new), token_expiry(held)
    return a is not None and b is not None and a <= b


def _no_answer(token: str, refused: str) -> bool:
    if token == refused:
        return True
    exp = token_expiry(token)
    return exp is not None and exp <= time.time()


def _backoff(attempt: int, base: float, most: float) -> float:
    """Full jitter: random in [0, min(most, base·2ⁿ))."""
    return random.random() * min(most, base * (2 ** min(attempt, 20)))


class Subscription:
    """A running subscription: iterate it (``async for event in sub``) for its events in
    order; ``last_seq`` is where it stands (save it to resume elsewhere)."""

    def __init__(self, client: "Client", last_seq: Optional[int], backoff_base: float,
                 backoff_max: float, buffer: int = 256) -> None:
        self._client = client
        self.last_seq = last_seq
        self._base = backoff_base
        self._max = backoff_max
        # Bounded: an application that stops reading stops the socket's reading too, so the
        # hub sees a slow consumer (and closes it; the next connection resumes) rather than
        # this process buffering without end.
        self._events: asyncio.Queue = asyncio.Queue(maxsize=max(1, buffer))
        self._ended = False
        self._stopping = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            event = await self.next()
            if event is None:
                return
            yield event

    async def next(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event; ``None`` once the subscription has ended."""
        if self._ended and self._events.empty():
            return None
        return await asyncio.wait_for(self._events.get(), timeout)

    async def close(self) -> None:
        """Stops: acknowledges what was delivered, closes the socket with 1000."""
        self._stopping.set()
        await self._task

    async def _emit(self, event: Optional[Event]) -> None:
        if event is None:
            self._ended = True
            try:
                self._events.put_nowait(None)
            except asyncio.QueueFull:
                pass  # `next()` sees `_ended` once the queue is drained
            return
        # Waits for room, unless the subscription is being stopped.
        put = asyncio.ensure_future(self._events.put(event))
        stop = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({put, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not put.done():
            put.cancel()

    async def _run(self) -> None:
        attempt = 0
        refused: Optional[str] = None
        try:
            while not self._stopping.is_set():
                try:
                    token = await self._client._token(REFUSED if refused else CONNECT)
                except Exception as e:  # the provider's own failure
                    await self._emit(Warning(f"the token provider failed: {e}"))
                    if await self._wait(_backoff(attempt, self._base, self._max)):
                        return
                    attempt += 1
                    continue
                if refused is not None and _no_answer(token, refused):
                    await self._emit(Unauthorized())
                    return
                refused = None
                code, reason, held = await self._connection(token)
                if code is None or self._stopping.is_set():
                    return
                again = code != 4003
                await self._emit(Disconnected(code, reason, again))
                if not again:
                    return
                if code == 4001:
                    refused = held
                if await self._wait(_backoff(attempt, self._base, self._max)):
                    return
                attempt += 1
        finally:
            await self._emit(None)

    async def _wait(self, seconds: float) -> bool:
        """Sleeps; true if the subscription was stopped meanwhile."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
            return True
        except asyncio.TimeoutError:
            return False

    async def _connection(self, token: str) -> tuple:
        base = self._client.base.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        url = f"{base}/ws/notifications/"
        if self.last_seq is not None:
            url += f"?last_seq={self.last_seq}"
        held = token
        try:
            ws = await ws_connect(url, subprotocols=["tickethub.v1", f"bearer.{token}"],
                                  open_timeout=10)
        except websockets.exceptions.InvalidStatus as e:
            status = e.response.status_code
            return (4001 if status == 401 else 1006, f"HTTP {status}", held)
        except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
            return (1006, str(e), held)
        acked = self.last_seq
        renewed_for: Optional[str] = None
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            while True:
                receive = asyncio.ensure_future(ws.recv())
                done, _ = await asyncio.wait({receive, stop}, timeout=0.25,
                                             return_when=asyncio.FIRST_COMPLETED)
                text = None
                if receive in done:
                    try:
                        text = receive.result()
                    except websockets.exceptions.ConnectionClosed as e:
                        frame = e.rcvd
                        return ((frame.code, frame.reason, held) if frame else
                                (1006, "the connection broke", held))
                else:
                    receive.cancel()
                # Delivered seqs are acknowledged at most every 250 ms, and on close.
                if self.last_seq is not None and self.last_seq != acked:
                    try:
                        await ws.send(json.dumps({"type": "ack", "seq": self.last_seq}))
                    except websockets.exceptions.ConnectionClosed:
                        return (1006, "the connection broke", held)
                    acked = self.last_seq
                if stop in done:
                    return (None, "", held)
                if text is None:
                    continue
                try:
                    frame = json.loads(text)
                except ValueError:
                    continue
                kind = frame.get("type")
                if kind == "connection_established":
                    await self._emit(Connected())
                elif kind == "notification":
                    n = Notification.from_frame(frame)
                    if self.last_seq is not None and n.seq <= self.last_seq:
                        continue
                    self.last_seq = n.seq
                    await self._emit(Delivered(n))
                elif kind == "replay_complete":
                    hub_seq = frame.get("last_seq")
                    # The hub's resume point: a client delivered nothing resumes after it.
                    if isinstance(hub_seq, int) and (self.last_seq is None or hub_seq > self.last_seq):
                        self.last_seq = hub_seq
                    await self._emit(Replayed(frame.get("count", 0), hub_seq))
                elif kind == "replay_truncated":
                    await self._emit(Truncated(frame.get("remaining", 0)))
                elif kind == "notification_updated":
                    what = "deleted" if frame.get("deleted") else "read" if frame.get("is_read") else "unread"
                    await self._emit(InboxChange(what, id=frame.get("id")))
                elif kind == "notifications_cleared":
                    await self._emit(InboxChange("cleared", count=frame.get("count")))
                elif kind == "all_marked_read":
                    await self._emit(InboxChange("all_read", count=frame.get("count")))
                elif kind == "token_expiring":
                    # Once per token, however often the hub warns.
                    if renewed_for == held:
                        continue
                    renewed_for = held
                    try:
                        new = await self._client._token(EXPIRING)
                    except Exception as e:
                        await self._emit(Warning(f"the token provider failed: {e}"))
                        continue
                    if _no_newer(new, held):
                        await self._emit(Warning(
                            "the token provider gave back the token that runs out; "
                            "the hub refuses it when it does"))
                        continue
                    try:
                        await ws.send(json.dumps({"type": "refresh_token", "token": new}))
                    except websockets.exceptions.ConnectionClosed:
                        return (1006, "the connection broke", held)
                    held = new
                elif kind == "token_refreshed":
                    await self._emit(Renewed())
                elif kind == "error":
                    await self._emit(Warning(f"{frame.get('code')}: {frame.get('message')}"))
        finally:
            stop.cancel()
            await ws.close()


class Client:
    """A client of one hub, for one user (whose tokens ``token`` gives: an async function of
    the reason, ``"connect"``, ``"expiring"`` or ``"refused"``)."""

    def __init__(self, url: str, token: TokenProvider) -> None:
        self.base = url.rstrip("/")
        self._provider = token

    async def _token(self, reason: str) -> str:
        token = await self._provider(reason)
        if not isinstance(token, str) or not token:
            raise TicketHubError("token", "the token provider gave no token")
        return token

    def subscribe(self, last_seq: Optional[int] = None, backoff_base: float = 0.5,
                  backoff_max: float = 30.0, buffer: int = 256) -> Subscription:
        """Follows the user's notifications, resuming after ``last_seq`` if given. At most
        ``buffer`` events wait for the application; past it the socket is not read either, so
        a consumer that falls behind is cut off by the hub (4008) and resumes where it stopped
        once it reads again."""
        return Subscription(self, last_seq, backoff_base, backoff_max, buffer)

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """Any REST call with the provider's token; a 401 asks for a new token and tries once
        more, unless the provider gives the same one again (``token_refused``)."""
        async with httpx.AsyncClient() as http:
            first = await self._token(CONNECT)
            res = await http.request(method, f"{self.base}{path}", json=body,
                                     headers={"authorization": f"Bearer {first}"})
            if res.status_code == 401:
                again = await self._token(REFUSED)
                if _no_answer(again, first):
                    raise TicketHubError("token_refused", "the hub refused the token, and the "
                                         "token provider gave it again")
                res = await http.request(method, f"{self.base}{path}", json=body,
                                         headers={"authorization": f"Bearer {again}"})
            return _answer(res)

    async def mark_read(self, id: int) -> Any:
        return await self.request("POST", f"/api/notifications/{id}/mark_as_read/", {})

    async def mark_unread(self, id: int) -> Any:
        return await self.request("POST", f"/api/notifications/{id}/mark_as_unread/", {})

    async def mark_all_read(self) -> Any:
        return await self.request("POST", "/api/notifications/mark_all_as_read/", {})

    async def delete(self, id: int) -> None:
        await self.request("DELETE", f"/api/notifications/{id}/")

    async def list(self, **params: Any) -> Any:
        """A page of the inbox: ``{count, next, previous, results}``."""
        query = httpx.QueryParams(params)
        return await self.request("GET", f"/api/notifications/?{query}" if params else
                                  "/api/notifications/")


def _answer(res: httpx.Response) -> Any:
    try:
        body = res.json() if res.content else None
    except ValueError:
        body = res.text
    if res.status_code >= 400:
        detail = body.get("detail") if isinstance(body, dict) else None
        raise TicketHubError(str(res.status_code), detail or f"HTTP {res.status_code}")
    return body


@dataclass
class Sender:
    """Sends notifications with an API key (scope ``notifications:send``)."""

    url: str
    api_key: str
    _http: Optional[httpx.AsyncClient] = field(default=None, repr=False)

    async def send(self, notification: dict, idempotency_key: str) -> Any:
        """Sends one notification (the body of ``POST /api/notifications/send/``). A retry with
        the same key gets the first answer and notifies nobody again; the key with another
        request is a ``TicketHubError`` with code ``"422"``."""
        async with httpx.AsyncClient() as http:
            res = await http.post(
                f"{self.url.rstrip('/')}/api/notifications/send/",
                json=notification,
                headers={"authorization": f"Api-Key {self.api_key}",
                         "idempotency-key": idempotency_key},
            )
            return _answer(res)
