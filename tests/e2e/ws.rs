//! The WebSocket endpoint: authentication, origin, protocol frames and close codes.

use futures::SinkExt;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;
use tickethub_actors::domain::Role;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{patience, Backend, Ended, TestHub, Ws, SECRET};

async fn a_user_past_their_socket_cap_is_refused_and_keeps_the_others(backend: Backend) {
    let hub = TestHub::start_with(&backend, |c| c.max_sockets_per_user = 3).await;
    let alice = hub.user("alice", Role::Client).await;
    let bob = hub.user("bob", Role::Client).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(hub.connect(&alice).await);
    }
    // The fourth, of any kind, is refused at once; the three stay.
    let mut fourth =
        Ws::connect(&hub.ws_url(&format!("/ws/notifications/?token={}", hub.token(&alice)))).await;
    assert_eq!(fourth.close_code().await, 4008);
    for ws in &mut open {
        ws.roundtrip().await;
    }
    // Another user is not counted against her.
    hub.connect(&bob).await.roundtrip().await;
    // A closed socket gives its slot back.
    let mut gone = open.pop().unwrap();
    gone.inner.close(None).await.unwrap();
    assert!(matches!(
        gone.ended().await,
        Ended::Closed(_) | Ended::Dropped
    ));
    crate::harness::eventually("the slot is free again", || async {
        let mut again =
            Ws::connect(&hub.ws_url(&format!("/ws/notifications/?token={}", hub.token(&alice))))
                .await;
        match futures::StreamExt::next(&mut again.inner).await {
            Some(Ok(Message::Text(t))) => t.contains("connection_established"),
            _ => false,
        }
    })
    .await;
}

async fn a_flooding_socket_is_limited_then_closed_and_nobody_else_notices(backend: Backend) {
    let hub = TestHub::start_with(&backend, |c| {
        c.ws_commands_per_second = 20;
        c.ws_command_burst = 50;
    })
    .await;
    let mallory = hub.user("mallory", Role::Client).await;
    let alice = hub.user("alice", Role::Client).await;
    let flood = hub.connect(&mallory).await;
    let mut calm = hub.connect(&alice).await;
    // A thousand commands as fast as they go: the burst is served, the excess refused, and the
    // socket that keeps on is closed with 4008. The answers are read while the commands are
    // written, so that neither side waits on the other's full buffers.
    let (mut commands, mut answers) = futures::StreamExt::split(flood.inner);
    let writer = tokio::spawn(async move {
        for _ in 0..1000 {
            if commands
                .send(Message::text(r#"{"type":"get_notifications"}"#))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let (mut served, mut refused) = (0, 0);
    let code = loop {
        let next = tokio::time::timeout(patience(), futures::StreamExt::next(&mut answers))
            .await
            .unwrap_or_else(|_| {
                panic!("no answer in time after {served} served and {refused} refused")
            });
        match next {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                match (v["type"].as_str(), v["code"].as_str()) {
                    (Some("error"), Some("rate_limited")) => refused += 1,
                    _ => served += 1,
                }
            }
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            _ => break None,
        }
    };
    assert_eq!(code, Some(4008));
    tokio::time::timeout(patience(), writer)
        .await
        .expect("the writer stops once the socket is closed")
        .unwrap();
    // The burst, and whatever the rate refilled while they were served (the bucket refills
    // at 20/s, so a slow machine serves a few more and refuses a few more before 51 refusals
    // in a row close the socket).
    assert!(served >= 50, "{served} served");
    assert!(refused >= 50, "{refused} refused");
    assert!(
        served + refused < 1000,
        "{served} served, {refused} refused"
    );
    // The other user's socket answers as before.
    calm.roundtrip().await;
}

fn forge(claims: serde_json::Value, key: &str) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn every_token_failure_closes_4001(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let user = hub.user("alice", Role::Admin).await;
    let id = user.id.0;
    let refresh = hub
        .auth
        .issue(&user, tickethub::auth::TokenType::Refresh, 600)
        .unwrap();
    let cases = [
        (
            "expired",
            forge(
                json!({"user_id": id, "exp": now() - 5, "token_type": "access"}),
                SECRET,
            ),
        ),
        (
            "wrong key",
            forge(
                json!({"user_id": id, "exp": now() + 600, "token_type": "access"}),
                "another-secret-another-secret-another",
            ),
        ),
        // {"alg":"none"} with no signature.
        (
            "alg none",
            format!(
                "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
                base64_url(
                    &json!({"user_id": id, "exp": now() + 600, "token_type": "access"}).to_string()
                )
            ),
        ),
        ("refresh as access", refresh),
        (
            "no exp",
            forge(json!({"user_id": id, "token_type": "access"}), SECRET),
        ),
        (
            "unknown user",
            forge(json!({"user_id": 999_999, "exp": now() + 600}), SECRET),
        ),
        ("garbage", "abc.def.ghi".to_owned()),
    ];
    for (what, token) in cases {
        let mut ws = Ws::connect(&hub.ws_url(&format!("/ws/notifications/?token={token}"))).await;
        assert_eq!(ws.close_code().await, 4001, "{what}");
    }
    let mut ws = Ws::connect(&hub.ws_url("/ws/notifications/")).await;
    assert_eq!(ws.close_code().await, 4001, "missing");
    // No actor was started for any of them.
    assert!(hub.hub.user(user.id).is_none());
    assert_eq!(hub.hub.user_stats().await.unwrap().actors, 0);
}

fn base64_url(s: &str) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = s.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | *b as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

async fn header_and_subprotocol_auth(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let user = hub.user("alice", Role::Client).await;
    let token = hub.token(&user);

    let mut ws = Ws::connect_with(
        &hub.ws_url("/ws/notifications/"),
        &[(
            "sec-websocket-protocol",
            format!("tickethub.v1, bearer.{token}"),
        )],
    )
    .await
    .unwrap();
    assert_eq!(ws.protocol.as_deref(), Some("tickethub.v1"));
    let hello = ws.established().await;
    assert_eq!(hello["user_id"], user.id.0);
    assert_eq!(hello["message"], "Connected successfully as alice");
    assert_eq!(hello["last_seq"], 0);

    let mut ws = Ws::connect_with(
        &hub.ws_url("/ws/notifications/"),
        &[("authorization", format!("Bearer {token}"))],
    )
    .await
    .unwrap();
    ws.established().await;

    // The subprotocol token wins over a bad query token.
    let mut ws = Ws::connect_with(
        &hub.ws_url("/ws/notifications/?token=garbage"),
        &[(
            "sec-websocket-protocol",
            format!("tickethub.v1, bearer.{token}"),
        )],
    )
    .await
    .unwrap();
    ws.established().await;
}

async fn ping_pong_and_error_frames() {
    // The socket's framing does not depend on the database: once, on SQLite.
    let backend = Backend::Sqlite;
    let hub = TestHub::start(&backend).await;
    let user = hub.user("alice", Role::Client).await;
    let mut ws = hub.connect(&user).await;

    ws.send_json(json!({"type": "ping", "timestamp": 1735038600000u64}))
        .await;
    assert_eq!(
        ws.next_json().await,
        json!({"type": "pong", "timestamp": 1735038600000u64})
    );

    ws.send(Message::text("{not json")).await;
    let err = ws.next_json().await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["code"], "bad_request");

    ws.send_json(json!({"type": "dance"})).await;
    let err = ws.next_json().await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["code"], "unknown_type");

    ws.send_json(json!({"no_type": true})).await;
    assert_eq!(ws.next_json().await["code"], "bad_request");

    // The socket is still open and well.
    ws.roundtrip().await;

    // A protocol ping from the client is answered with a pong carrying its payload.
    ws.send(Message::Ping(b"hi".to_vec().into())).await;
    loop {
        match tokio::time::timeout(patience(), futures::StreamExt::next(&mut ws.inner))
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"hi");
                break;
            }
            Message::Ping(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn binary_and_oversized_frames_close() {
    // The socket's framing does not depend on the database: once, on SQLite.
    let backend = Backend::Sqlite;
    let hub = TestHub::start(&backend).await;
    let user = hub.user("alice", Role::Client).await;

    let mut ws = hub.connect(&user).await;
    ws.send(Message::binary(vec![1, 2, 3])).await;
    assert_eq!(ws.close_code().await, 1003);

    let mut ws = hub.connect(&user).await;
    let big = format!(
        "{{\"type\":\"ping\",\"pad\":\"{}\"}}",
        "x".repeat(100 * 1024)
    );
    ws.send(Message::text(big)).await;
    assert_eq!(ws.close_code().await, 1009);

    // Just under the limit is fine.
    let mut ws = hub.connect(&user).await;
    let ok = format!(
        "{{\"type\":\"ping\",\"timestamp\":1,\"pad\":\"{}\"}}",
        "x".repeat(60 * 1024)
    );
    ws.send(Message::text(ok)).await;
    assert_eq!(ws.next_json().await["type"], "pong");
}

async fn foreign_origins_are_refused_before_the_upgrade() {
    // The socket's framing does not depend on the database: once, on SQLite.
    let backend = Backend::Sqlite;
    let hub = TestHub::start_with(&backend, |c| {
        c.allowed_origins = vec!["https://app.example".into()];
    })
    .await;
    let user = hub.user("alice", Role::Client).await;
    let url = hub.ws_url(&format!("/ws/notifications/?token={}", hub.token(&user)));
    for origin in ["https://evil.example", "null", "https://app.example.evil"] {
        match Ws::connect_with(&url, &[("origin", origin.to_owned())]).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 403, "{origin}")
            }
            Err(other) => panic!("{origin}: unexpected {other}"),
            Ok(_) => panic!("{origin} was allowed"),
        }
    }
    let mut ws = Ws::connect_with(&url, &[("origin", "https://app.example".to_owned())])
        .await
        .unwrap();
    ws.established().await;
    // Non-browser clients send no Origin and are allowed.
    let mut ws = Ws::connect(&url).await;
    ws.established().await;
    assert!(hub.hub.user(user.id).is_some());
}

async fn expiring_tokens_warn_refresh_and_close(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let user = hub.user("alice", Role::Client).await;
    let short = |secs: i64| {
        forge(
            json!({"user_id": user.id.0, "exp": now() + secs, "token_type": "access"}),
            SECRET,
        )
    };

    // A token with 31 s left is warned about at once, and a refresh keeps the socket alive.
    let mut ws = Ws::connect(&hub.ws_url(&format!("/ws/notifications/?token={}", short(31)))).await;
    ws.established().await;
    let warning = ws.next_json().await;
    assert_eq!(warning["type"], "token_expiring");
    assert!(warning["expires_in"].as_i64().unwrap() <= 30);
    let fresh = hub.token(&user);
    ws.send_json(json!({"type": "refresh_token", "token": fresh}))
        .await;
    let refreshed = ws.next_json().await;
    assert_eq!(refreshed["type"], "token_refreshed");
    assert!(refreshed["expires_at"].as_i64().unwrap() > now() + 60);
    // A refresh with another user's token is refused and changes nothing.
    let other = hub.user("mallory", Role::Client).await;
    ws.send_json(json!({"type": "refresh_token", "token": hub.token(&other)}))
        .await;
    assert_eq!(ws.next_json().await["code"], "invalid_token");
    ws.roundtrip().await;

    // A token that runs out on a live socket closes it with 4001 (it lives long enough for the
    // handshake, on a loaded machine too).
    let lifetime = (crate::harness::scaled_ms(3_000) / 1000).max(3) as i64;
    let mut ws =
        Ws::connect(&hub.ws_url(&format!("/ws/notifications/?token={}", short(lifetime)))).await;
    ws.established().await;
    assert_eq!(ws.next_json().await["type"], "token_expiring");
    assert_eq!(ws.close_code().await, 4001);
}

async fn heartbeat_pings_and_closes_silent_sockets() {
    // The socket's heartbeat does not depend on the database: once, on SQLite.
    let backend = Backend::Sqlite;
    let hub = TestHub::start_with(&backend, |c| {
        c.ws_ping_interval = 1;
        c.ws_idle_timeout = 2;
    })
    .await;
    let user = hub.user("alice", Role::Client).await;

    // A client that reads (and so answers pings) sees them and stays connected.
    let mut ws = hub.connect(&user).await;
    let mut pings = 0;
    while pings < 3 {
        match tokio::time::timeout(patience(), futures::StreamExt::next(&mut ws.inner))
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Ping(_) => pings += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    ws.roundtrip().await;

    // A client that neither reads nor writes is closed after the idle timeout: the user's actor
    // lets go of it (its close frame waits in the socket), while the first socket, kept alive
    // meanwhile, stays.
    let mut silent = hub.connect(&user).await;
    let actor = hub.hub.user(user.id).expect("the user is connected");
    // The first socket keeps reading (and so answering pings) in a task of its own meanwhile.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => return ws,
                msg = futures::StreamExt::next(&mut ws.inner) => { msg.unwrap().unwrap(); }
            }
        }
    });
    crate::harness::eventually("the silent socket is let go", || async {
        let snapshot = ractor::call_t!(
            actor,
            tickethub_actors::user::UserMsg::Snapshot,
            crate::harness::patience_ms()
        )
        .expect("the actor answers");
        snapshot.connections.len() == 1
    })
    .await;
    stop.send(()).unwrap();
    let mut ws = reader.await.expect("the first socket stayed open");
    assert_eq!(silent.ended().await, Ended::Closed(4000));
    ws.roundtrip().await;
}

/// A raw frame from the client, as a conformance fuzzer would send it.
fn raw(
    opcode: tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode,
    fin: bool,
    payload: Vec<u8>,
) -> Message {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let mut frame = Frame::message(payload, OpCode::Data(Data::Text), fin);
    frame.header_mut().opcode = opcode;
    Message::Frame(frame)
}

async fn protocol_violations_fail_the_connection_as_rfc_6455_says() {
    // The socket's framing does not depend on the database: once, on SQLite.
    let backend = Backend::Sqlite;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
    let hub = TestHub::start(&backend).await;
    let user = hub.user("alice", Role::Client).await;
    let close = |payload: Vec<u8>| raw(OpCode::Control(Control::Close), true, payload);
    let cases: Vec<(&str, Vec<Message>, u16)> = vec![
        (
            "a continuation with no message to continue",
            vec![raw(OpCode::Data(Data::Continue), true, b"{}".to_vec())],
            1002,
        ),
        (
            "a new text message inside a fragmented one",
            vec![
                raw(OpCode::Data(Data::Text), false, b"{\"type\":".to_vec()),
                raw(OpCode::Data(Data::Text), true, b"{}".to_vec()),
            ],
            1002,
        ),
        (
            "a text message that is not UTF-8",
            vec![raw(OpCode::Data(Data::Text), true, vec![0xce, 0xba, 0xff])],
            1007,
        ),
        (
            "a fragmented text message that is not UTF-8",
            vec![
                raw(OpCode::Data(Data::Text), false, vec![b'"', 0xce]),
                raw(OpCode::Data(Data::Continue), true, vec![0xff, b'"']),
            ],
            1007,
        ),
        ("a close payload of one byte", vec![close(vec![3])], 1002),
        (
            "close code 999",
            vec![close(999u16.to_be_bytes().to_vec())],
            1002,
        ),
        (
            "close code 1005",
            vec![close(1005u16.to_be_bytes().to_vec())],
            1002,
        ),
        (
            "close code 2999",
            vec![close(2999u16.to_be_bytes().to_vec())],
            1002,
        ),
        (
            "a close reason that is not UTF-8",
            vec![close(vec![0x03, 0xe8, 0xff, 0xfe])],
            1007,
        ),
        (
            "a close reason over 123 bytes",
            vec![close([vec![0x03, 0xe8], vec![b'a'; 124]].concat())],
            1002,
        ),
        (
            "a valid close",
            vec![close(3000u16.to_be_bytes().to_vec())],
            1000,
        ),
    ];
    for (what, frames, code) in cases {
        let mut ws = hub.connect(&user).await;
        for f in frames {
            ws.send(f).await;
        }
        assert_eq!(ws.close_code().await, code, "{what}");
    }
    // A fragmented message is one message; a ping between its fragments is answered.
    let mut ws = hub.connect(&user).await;
    ws.send(raw(
        OpCode::Data(Data::Text),
        false,
        b"{\"type\":\"pi".to_vec(),
    ))
    .await;
    ws.send(raw(OpCode::Control(Control::Ping), true, b"p".to_vec()))
        .await;
    ws.send(raw(
        OpCode::Data(Data::Continue),
        true,
        b"ng\",\"timestamp\":5}".to_vec(),
    ))
    .await;
    let pong = ws.next_json().await;
    assert_eq!(
        (pong["type"].as_str(), pong["timestamp"].as_i64()),
        (Some("pong"), Some(5))
    );
    // The size limit is inclusive: a message of exactly 65,536 bytes is read.
    let head = "{\"type\":\"ping\",\"timestamp\":6,\"pad\":\"";
    let exact = format!("{head}{}\"}}", "x".repeat(65_536 - head.len() - 2));
    assert_eq!(exact.len(), 65_536);
    ws.send(Message::text(exact)).await;
    assert_eq!(ws.next_json().await["timestamp"], 6);
}

/// A client stream that writes at most `chunk` bytes a call, each sent at once (no Nagle), so
/// that the hub reads frames in pieces: a header split across reads, a payload across many.
struct Chunked {
    inner: tokio::net::TcpStream,
    chunk: usize,
}

impl tokio::io::AsyncRead for Chunked {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Chunked {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let n = buf.len().min(self.chunk);
        std::pin::Pin::new(&mut self.inner).poll_write(cx, &buf[..n])
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A ping of exactly `len` bytes (at least 40) carrying `timestamp`.
fn ping_of(len: usize, timestamp: usize) -> String {
    let head = format!("{{\"type\":\"ping\",\"timestamp\":{timestamp},\"pad\":\"");
    let text = format!("{head}{}\"}}", "x".repeat(len - head.len() - 2));
    assert_eq!(text.len(), len);
    text
}

/// A socket gives its read buffer up between frames (`vendor/fastwebsockets/PATCHES.md`), so
/// every frame is read into a buffer started small: frames of every size, around each length
/// encoding's bounds, written a few bytes at a time and many to one write, are all read whole
/// and in order.
async fn frames_of_every_size_are_read_whole_however_they_arrive() {
    // The socket's framing does not depend on the database: once, on SQLite.
    let backend = Backend::Sqlite;
    let hub = TestHub::start_with(&backend, |c| c.ws_commands_per_second = 0).await;
    let user = hub.user("alice", Role::Client).await;
    let sizes = [
        40, 57, 58, 63, 64, 65, 100, 125, 126, 127, 128, 200, 1_000, 4_096, 8_192, 8_193, 9_000,
        65_535, 65_536,
    ];
    for chunk in [1, 3, 7, 61, 4_096] {
        let url = hub.ws_url(&format!("/ws/notifications/?token={}", hub.token(&user)));
        let tcp = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let stream = Chunked { inner: tcp, chunk };
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let (mut ws, _) =
            tokio_tungstenite::client_async(url.into_client_request().unwrap(), stream)
                .await
                .unwrap();
        let mut timestamps = Vec::new();
        // One frame a write, each written `chunk` bytes at a time.
        for (i, &len) in sizes.iter().enumerate() {
            ws.send(Message::text(ping_of(len, i))).await.unwrap();
            timestamps.push(i);
        }
        // Then all of them fed to one flush: several frames to a read.
        for (i, &len) in sizes.iter().enumerate() {
            ws.feed(Message::text(ping_of(len, 100 + i))).await.unwrap();
            timestamps.push(100 + i);
        }
        ws.flush().await.unwrap();
        let mut pongs = Vec::new();
        while pongs.len() < timestamps.len() {
            let frame = tokio::time::timeout(patience(), futures::StreamExt::next(&mut ws))
                .await
                .expect("a pong in time")
                .expect("the socket open")
                .unwrap();
            let Message::Text(text) = frame else { continue };
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "pong" {
                pongs.push(v["timestamp"].as_u64().unwrap() as usize);
            }
        }
        assert_eq!(pongs, timestamps, "written {chunk} bytes at a time");
    }
}

crate::trials! {
    both: [
        every_token_failure_closes_4001,
        header_and_subprotocol_auth,
        expiring_tokens_warn_refresh_and_close,
        a_flooding_socket_is_limited_then_closed_and_nobody_else_notices,
        a_user_past_their_socket_cap_is_refused_and_keeps_the_others,
    ],
    tests: [
        protocol_violations_fail_the_connection_as_rfc_6455_says,
        heartbeat_pings_and_closes_silent_sockets,
        foreign_origins_are_refused_before_the_upgrade,
        binary_and_oversized_frames_close,
        ping_pong_and_error_frames,
        frames_of_every_size_are_read_whole_however_they_arrive,
    ],
    sync: [],
}
