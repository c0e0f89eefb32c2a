// The package's types, checked by `tsc` (`.ci/js-client`): the README's example and every
// event, as an application written in TypeScript uses them.
import { TicketHub, TicketHubError, tokenExpiry, describeClose } from "../index.js";
import type { Notification, State, TokenContext } from "../index.js";

let pair: { access: string; refresh: string } | null = null;

async function token({ reason }: TokenContext): Promise<string> {
  if (pair && reason !== "connect") {
    const res = await fetch("http://127.0.0.1:8080/api/auth/refresh/", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ refresh: pair.refresh }),
    });
    if (res.ok) {
      pair = (await res.json()) as { access: string; refresh: string };
      return pair.access;
    }
    pair = null;
  }
  const res = await fetch("http://127.0.0.1:8080/api/auth/login/", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "client", password: "client-demo" }),
  });
  pair = (await res.json()) as { access: string; refresh: string };
  return pair.access;
}

export async function example(): Promise<number | null> {
  const hub = new TicketHub({ url: "http://127.0.0.1:8080", token, transports: ["websocket", "sse"] });
  const seen: Notification[] = [];
  hub.on("notification", (n) => seen.push(n));
  hub.on("state", ({ state, previous, transport }) => {
    const states: State[] = [state, previous];
    return [states, transport];
  });
  hub.on("error", (e: TicketHubError) => {
    if (e.code === "token_refused") return hub.connect();
    return undefined;
  });
  hub.on("disconnect", ({ code, willReconnect }) => (willReconnect ? describeClose(code) : null));
  await hub.connect();
  const unauthorized: State = "unauthorized";
  if (hub.state === unauthorized) await hub.connect();
  const fresh: string = await hub.token("expiring", null);
  const room = hub.project(1);
  room.on("ticket_update", (t) => t.version);
  room.on("renewed", ({ expiresAt }) => expiresAt);
  hub.close();
  return tokenExpiry(fresh);
}
