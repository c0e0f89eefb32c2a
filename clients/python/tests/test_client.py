"""The client against a real hub, scenario by scenario of the clients' shared contract
(``clients/CONFORMANCE.md``): each notification once and in order across kill -9 and a
restart, acks, a token renewed once per expiry, a refused token given again stops the client,
sends with idempotency keys, inbox commands."""

from __future__ import annotations

import asyncio

import pytest

from tickethub_client import (
    Client, Connected, Delivered, Disconnected, InboxChange, Renewed, Replayed, Sender,
    TicketHubError, Unauthorized, Warning,
)

from hub import PATIENCE, Hub, lasting


@pytest.fixture
def hub():
    h = Hub().start()
    yield h
    h.stop()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 12 * PATIENCE))


async def next_event(sub, skip=(Warning,)):
    while True:
        event = await sub.next(PATIENCE)
        if not isinstance(event, skip):
            return event


def note(user: int, title: str) -> dict:
    return {"user_ids": [user], "notification_type": "system", "title": title, "message": title}


def fresh_tokens(hub: Hub):
    async def provider(reason: str) -> str:
        return hub.login("client")["access"]
    return provider


def test_once_in_order_across_kill_9_and_a_restart(hub):
    """Scenarios `resume-after-kill-9` and `acks`."""
    client_id = hub.user_id("client")
    key = hub.api_key()

    async def scenario():
        client = Client(hub.url, fresh_tokens(hub))
        sender = Sender(hub.url, key)
        sub = client.subscribe(backoff_base=0.05, backoff_max=0.5)
        assert isinstance(await next_event(sub), Connected)
        assert isinstance(await next_event(sub), Replayed)
        for i in range(3):
            await sender.send(note(client_id, f"before {i}"), f"before-{i}")
        got = [(await next_event(sub)).notification for _ in range(3)]
        assert [n.title for n in got] == ["before 0", "before 1", "before 2"]
        hub.kill9()
        dropped = await next_event(sub)
        assert isinstance(dropped, Disconnected) and dropped.will_reconnect
        hub.start()
        # Reconnected (after however many refused tries), then two more: each once, in order.
        while not isinstance(await next_event(sub, skip=(Warning, Disconnected)), Connected):
            pass
        for i in range(2):
            await sender.send(note(client_id, f"after {i}"), f"after-{i}")
        more = []
        while len(more) < 2:
            event = await next_event(sub)
            if isinstance(event, Delivered):
                more.append(event.notification)
        assert [n.title for n in more] == ["after 0", "after 1"]
        seqs = [n.seq for n in got + more]
        assert seqs == sorted(set(seqs)), seqs
        assert sub.last_seq == seqs[-1]
        await sub.close()
        # Scenario `acks`: what was delivered was acknowledged (its timeline says so).
        for _ in range(int(PATIENCE * 10)):
            timeline = await client.request("GET", f"/api/notifications/{more[-1].id}/timeline/")
            if any(e.get("event") == "acked" for e in timeline["events"]):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"the last notification was never acknowledged: {timeline}")

    run(scenario())


def test_sends_with_idempotency_keys_and_inbox_commands(hub):
    """Scenarios `idempotent-send` and `inbox-commands`."""
    client_id = hub.user_id("client")
    key = hub.api_key()

    async def scenario():
        client = Client(hub.url, fresh_tokens(hub))
        sender = Sender(hub.url, key)
        sub = client.subscribe()
        assert isinstance(await next_event(sub), Connected)
        await sender.send(note(client_id, "once"), "k-1")
        await sender.send(note(client_id, "once"), "k-1")
        with pytest.raises(TicketHubError) as refused:
            await sender.send(note(client_id, "other"), "k-1")
        assert refused.value.code == "422"
        delivered = None
        while delivered is None:
            event = await next_event(sub)
            if isinstance(event, Delivered):
                delivered = event.notification
        page = await client.list(is_read="false")
        assert [n["title"] for n in page["results"]] == ["once"]
        await client.mark_read(delivered.id)
        event = await next_event(sub)
        assert event == InboxChange("read", id=delivered.id)
        with pytest.raises(TicketHubError) as missing:
            await client.mark_read(999999)
        assert missing.value.code == "404"
        await sub.close()

    run(scenario())


def test_a_token_is_renewed_once_per_expiry(hub):
    """Scenario `token-expiry`: tokens with 31 s left; the hub warns at once."""
    asked = []

    async def provider(reason: str) -> str:
        asked.append(reason)
        token = hub.login("client")["access"]
        return token if reason == "expiring" else lasting(token, 31)

    async def scenario():
        sub = Client(hub.url, provider).subscribe()
        assert isinstance(await next_event(sub), Connected)
        while not isinstance(await next_event(sub), Renewed):
            pass
        assert asked == ["connect", "expiring"]
        await sub.close()

    run(scenario())


def test_a_refused_token_given_again_stops_the_client(hub):
    """Scenario `refusal`."""
    calls = []

    async def provider(reason: str) -> str:
        calls.append(reason)
        return "not-a-token"

    async def scenario():
        client = Client(hub.url, provider)
        sub = client.subscribe(backoff_base=0.01)
        first = await next_event(sub)
        assert isinstance(first, Disconnected) and first.code == 4001 and first.will_reconnect
        assert isinstance(await next_event(sub), Unauthorized)
        assert await sub.next(PATIENCE) is None, "the subscription ended"
        assert calls == ["connect", "refused"]
        with pytest.raises(TicketHubError) as refused:
            await client.list()
        assert refused.value.code == "token_refused"

    run(scenario())


def test_a_consumer_that_falls_behind_is_cut_off_and_resumes():
    """Scenario `slow-consumer`: the application takes nothing while 120 notifications of
    150 KB (18 MB, far more than the kernel's buffers and the hub's queue hold) arrive; the hub
    cuts the socket off, and once the application reads again every notification arrives once,
    in order."""
    hub = Hub("--ws-outbound-queue", "8", "--ws-outbound-queue-bytes", "1048576").start()
    try:
        client_id = hub.user_id("client")
        key = hub.api_key()

        async def scenario():
            client = Client(hub.url, fresh_tokens(hub))
            sender = Sender(hub.url, key)
            sub = client.subscribe(buffer=2, backoff_base=0.05, backoff_max=0.5)
            assert isinstance(await next_event(sub), Connected)
            blob = "x" * (150 * 1024)
            for i in range(120):
                body = {**note(client_id, f"n{i}"), "data": {"blob": blob}}
                await sender.send(body, f"big-{i}")
            titles, cut_off = [], []
            while len(titles) < 120:
                event = await next_event(sub)
                if isinstance(event, Delivered):
                    titles.append(event.notification.title)
                elif isinstance(event, Disconnected):
                    assert event.will_reconnect
                    cut_off.append(event.code)
            assert cut_off, "the slow socket was cut off"
            assert titles == [f"n{i}" for i in range(120)]
            await sub.close()

        run(scenario())
    finally:
        hub.stop()
