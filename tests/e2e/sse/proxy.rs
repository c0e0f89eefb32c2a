use super::*;

/// Serves one connection of the proxy.
pub(super) async fn proxy_one(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut cut: tokio::sync::watch::Receiver<u64>,
    refused: &AtomicUsize,
    passed: &AtomicUsize,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 64 * 1024 {
            return Ok(());
        }
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    };
    let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
    let upgrade = text.lines().skip(1).any(|line| {
        line.split_once(':')
            .is_some_and(|(name, value)| name.trim() == "upgrade" && value.contains("websocket"))
    });
    if upgrade {
        refused.fetch_add(1, Ordering::SeqCst);
        let body = "WebSockets are not allowed here";
        client
            .write_all(
                format!(
                    "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await?;
        client.shutdown().await?;
        return Ok(());
    }
    passed.fetch_add(1, Ordering::SeqCst);
    let mut server = TcpStream::connect(upstream).await?;
    // The head and whatever came after it.
    server.write_all(&head).await?;
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.changed() => {}
    }
    // Both sides close as they drop.
    Ok(())
}

pub(super) async fn a_proxy_that_refuses_websockets_still_carries_the_stream_and_its_resume(
    backend: Backend,
) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    let proxy = Proxy::start(hub.addr).await;

    // The socket cannot get through: the proxy answers its upgrade with 403, and the hub
    // never hears of it.
    let ws_url = format!(
        "ws://{}/ws/notifications/?token={}",
        proxy.addr,
        hub.token(&alice)
    );
    match Ws::connect_with(&ws_url, &[]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 403),
        Err(other) => panic!("expected the proxy's 403, got {other:?}"),
        Ok(_) => panic!("the WebSocket upgrade passed the proxy"),
    }
    assert_eq!(proxy.refused.load(Ordering::SeqCst), 1);
    assert!(hub.hub.user(alice.id).is_none());
    // While the same socket straight to the hub works.
    let mut direct = hub.connect(&alice).await;
    direct.roundtrip().await;
    drop(direct);

    // The event stream passes, and hears a notification sent through the proxy meanwhile.
    let mut sse = Sse::connect(
        &hub.http,
        &stream_url(proxy.addr, ""),
        &[bearer(&hub, &alice)],
    )
    .await;
    assert_eq!(sse.hello["user_id"], alice.id.0);
    let res = hub
        .http
        .post(format!("http://{}{SEND}", proxy.addr))
        .bearer_auth(hub.token(&admin))
        .json(&send_body(&[alice.id.0], json!({"title": "through"})))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let first = sse.notification().await;
    assert_eq!(
        (first.seq(), first.data["title"].clone()),
        (1, json!("through"))
    );
    assert!(proxy.passed.load(Ordering::SeqCst) >= 2);

    // The proxy cuts the stream; what is sent meanwhile comes on the resumed stream, once.
    proxy.cut();
    let before_end = sse.ended().await;
    assert!(
        before_end.iter().all(|e| e.event != "notification"),
        "{before_end:?}"
    );
    for title in ["while cut 1", "while cut 2"] {
        send(&hub, &admin, &alice, title).await;
    }
    let resume_at = sse.last_event_id.clone().expect("an id to resume from");
    assert_eq!(resume_at, "1");
    let mut again = Sse::connect(
        &hub.http,
        &stream_url(proxy.addr, ""),
        &[bearer(&hub, &alice), ("last-event-id", resume_at)],
    )
    .await;
    assert_eq!(again.replayed_seqs(), [2, 3]);
    assert_eq!(titles(&again.replayed), ["while cut 1", "while cut 2"]);
    assert_eq!(again.complete()["last_seq"], 3);
    send(&hub, &admin, &alice, "after").await;
    let live = again.notification().await;
    assert_eq!(
        (live.seq(), live.data["title"].clone()),
        (4, json!("after"))
    );
    // The proxy still refuses the socket.
    assert!(Ws::connect_with(&ws_url, &[]).await.is_err());
    assert_eq!(proxy.refused.load(Ordering::SeqCst), 2);
}
