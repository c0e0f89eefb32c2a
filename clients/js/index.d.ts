// Types of @tickethub/client.

/** A notification as the hub sends it (seed 001's shape), without its `type`. */
export interface Notification {
  id: number;
  seq: number;
  notification_type: string;
  title: string;
  message: string;
  ticket: {
    id: number;
    key: string;
    title: string;
    priority: string;
    priority_display: string;
    category: string;
    status: string;
    created_by: string;
    project_name: string;
    created_at: string;
  } | null;
  data: Record<string, unknown>;
  action_url: string | null;
  is_read: boolean;
  timestamp: string;
  replayed: boolean;
}

/** A notification as the REST API lists it (`GET /api/notifications/`). */
export interface RestNotification {
  id: number;
  seq: number;
  ticket: number | null;
  ticket_key: string | null;
  ticket_title: string | null;
  recipient: number;
  recipient_name: string;
  notification_type: string;
  notification_type_display: string;
  title: string;
  subject: string;
  message: string;
  data: Record<string, unknown>;
  action_url: string | null;
  status: string;
  status_display: string;
  sent_at: string | null;
  is_read: boolean;
  read_at: string | null;
  created_at: string;
}

/** A page of a REST list. */
export interface Page<T> {
  count: number;
  next: string | null;
  previous: string | null;
  results: T[];
}

export type InboxEvent =
  | { type: "read" | "unread" | "deleted"; id: number }
  | { type: "cleared"; count: number }
  | { type: "all_read"; count: number; notification_type: string | null; ticket: number | null };

export type State = "idle" | "connecting" | "connected" | "reconnecting" | "unauthorized" | "closed";
export type Transport = "websocket" | "sse";

export interface StateEvent {
  state: State;
  previous: State;
  transport: Transport | null;
}

export interface DisconnectEvent {
  code: number;
  reason: string;
  willReconnect: boolean;
}

/**
 * Why a token is asked for: `connect`, a new connection or a first REST call (a cached token
 * that is still valid will do); `expiring`, the hub said the current one runs out within 30 s;
 * `refused`, the hub refused the last one (close code 4001, or HTTP 401). For the last two,
 * answer a new token.
 */
export interface TokenContext {
  reason: "connect" | "expiring" | "refused";
}

export interface RetryEvent {
  /** How many attempts in a row have failed, this one included. */
  attempt: number;
  /** ms until the next attempt. */
  delay: number;
}

export interface TicketHubOptions {
  /** The hub's base URL, `http://host:8080`. */
  url: string;
  /** An access token; called for every connection, when it is about to expire and when refused. */
  token: (context: TokenContext) => string | Promise<string>;
  /** The seq the application has already seen: delivery resumes after it. */
  lastSeq?: number;
  /** Transports in order of preference (default `["websocket", "sse"]`). */
  transports?: Transport[];
  /** First backoff ceiling in ms (500); doubles per failed attempt. */
  backoffBase?: number;
  /** Largest backoff ceiling in ms (30000). */
  backoffMax?: number;
  /** ms between tries to go back from the event stream to a WebSocket (60000). */
  upgradeInterval?: number;
  /** ms of silence after which an event stream is opened again (45000; the hub writes every 15 s). */
  streamTimeout?: number;
  /** A WebSocket implementation (default: the global one). */
  WebSocket?: unknown;
  /** A fetch implementation (default: the global one). */
  fetch?: typeof fetch;
}

/**
 * A close or error code from the hub, with what it means: a close code as a string (`"4003"`),
 * an HTTP status of a REST call (`"404"`), an error frame's code (`"rate_limited"`), `"token"`
 * (the token function threw or gave no string), `"token_unchanged"` (asked for a renewal, it
 * gave back the token that runs out), `"token_refused"` (the hub refused a token and the
 * provider gave it again: the client stops until `connect()`), `"transport"` (no WebSocket or
 * fetch) or `"closed"`.
 */
export class TicketHubError extends Error {
  name: "TicketHubError";
  code: string;
  constructor(code: string, message: string);
}

export interface HubEvents {
  notification: Notification;
  inbox: InboxEvent;
  truncated: { remaining: number };
  replayed: { count: number; lastSeq: number | null };
  /** The hub took a renewed token on the socket. */
  renewed: { expiresAt: number | null };
  state: StateEvent;
  disconnect: DisconnectEvent;
  retry: RetryEvent;
  error: TicketHubError;
}

export class TicketHub {
  constructor(options: TicketHubOptions);
  readonly state: State;
  readonly transport: Transport | null;
  /** The resume point: the seq of the last notification delivered (or the hub's resume point). */
  readonly lastSeq: number | null;
  /** The highest seq acknowledged to the hub. */
  readonly ackedSeq: number | null;
  on<K extends keyof HubEvents>(event: K, listener: (value: HubEvents[K]) => void): () => void;
  once<K extends keyof HubEvents>(event: K, listener: (value: HubEvents[K]) => void): () => void;
  off<K extends keyof HubEvents>(event: K, listener: (value: HubEvents[K]) => void): void;
  /**
   * Resolves once the hub greeted the connection; rejects if the client stops first. From
   * `"unauthorized"`, asks the token provider again and goes on.
   */
  connect(): Promise<void>;
  /** A token from the provider (one call at a time; concurrent callers share it). */
  token(reason?: TokenContext["reason"], holding?: string | null): Promise<string>;
  /** Stops for good. */
  close(): void;
  request<T = unknown>(method: string, path: string, body?: unknown): Promise<T>;
  markRead(id: number): Promise<unknown>;
  markUnread(id: number): Promise<unknown>;
  markAllRead(): Promise<unknown>;
  remove(id: number): Promise<unknown>;
  list(params?: Record<string, string | number | boolean>): Promise<Page<RestNotification>>;
  /** A project's live board and presence. */
  project(id: number): ProjectRoom;
}

export interface Present {
  user_id: number;
  username: string;
  display_name: string;
  viewing: number | null;
}

export interface TicketUpdate {
  action: "created" | "status_changed" | "updated";
  ticket_id: number;
  key: string;
  title: string;
  priority: string;
  status: { name: string; code: string; color: string };
  assignees: unknown[];
  updated_at: string;
  version: number;
}

export interface RoomEvents {
  ticket_update: TicketUpdate;
  comment_added: { ticket_id: number; key: string; comment: { id: number; author: string; author_id: number; body: string; created_at: string } };
  /** A file was attached to a ticket of the project or deleted: load its files again. */
  attachments_changed: { ticket_id: number; key: string };
  presence: Present[];
  joined: Present;
  left: { user_id: number; username: string };
  viewing: { user_id: number; ticket_id: number | null };
  typing: { user_id: number; ticket_id: number; is_typing: boolean };
  state: { state: "connecting" | "connected" | "reconnecting" | "closed"; previous: string };
  retry: RetryEvent;
  /** The hub took a renewed token on one of the room's sockets. */
  renewed: { expiresAt: number | null };
  error: TicketHubError;
  closed: void;
}

export class ProjectRoom {
  readonly id: number;
  readonly state: "connecting" | "connected" | "reconnecting" | "closed";
  on<K extends keyof RoomEvents>(event: K, listener: (value: RoomEvents[K]) => void): () => void;
  once<K extends keyof RoomEvents>(event: K, listener: (value: RoomEvents[K]) => void): () => void;
  off<K extends keyof RoomEvents>(event: K, listener: (value: RoomEvents[K]) => void): void;
  /** The project's tickets over REST; their versions decide which updates are stale. */
  tickets(): Promise<Array<{ id: number; version: number } & Record<string, unknown>>>;
  people(): Present[];
  view(ticketId: number | null): boolean;
  typing(ticketId: number, isTyping?: boolean): boolean;
  close(): void;
}

export function backoff(attempt: number, base?: number, max?: number, random?: () => number): number;
export function describeClose(code: number): string;
/** The `exp` claim of a JWT, in seconds since the epoch; `null` for a token that is not one. */
export function tokenExpiry(token: string): number | null;

export class SseParser {
  push(text: string): Array<{ event: string; data: string; id: string | null }>;
}

export default TicketHub;
