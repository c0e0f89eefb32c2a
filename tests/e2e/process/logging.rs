use super::*;

/// At the default log level a request has no span of its own, and one that fails is logged
/// with its method, route and status. A request shed under load (503 with `Retry-After`, here
/// logins that found password hashing busy) is counted but not logged: the client was told
/// when to retry, and a flood must not flood the log.
pub(super) async fn a_failed_request_is_logged_with_its_route_and_a_shed_one_is_not() {
    let (mut cmd, dir) = Proc::command(
        &[
            "--demo",
            "--http-request-timeout",
            "1",
            "--password-hashing-concurrency",
            "1",
            "--password-hashing-wait-ms",
            "1",
            "--login-per-minute",
            "0",
        ],
        &[],
    );
    cmd.env_remove("RUST_LOG");
    let hub = Proc::start(cmd, Some(dir)).await;
    let failed = |l: &str| {
        l.contains("request failed")
            && l.contains("method=POST")
            && l.contains("route=/api/auth/login/")
            && l.contains("status=503")
    };
    let trickled_body_fails = || async {
        // A body that stops half-way: the request's deadline answers it.
        let mut request = InFlight::begin(&hub.addr, "/api/auth/login/").await;
        request.send("{\"username\": ").await;
        let head = read_head(&mut request.stream).await;
        assert!(head.starts_with("HTTP/1.1 503"), "{head:?}");
        assert!(
            !head.to_ascii_lowercase().contains("retry-after"),
            "{head:?}"
        );
    };
    trickled_body_fails().await;
    hub.logged("the failed request, with its route", 1, failed)
        .await;
    let logs = hub.log_text();
    let line = logs.lines().find(|l| failed(l)).unwrap();
    assert!(
        !line.contains("http{"),
        "a request's span at the default level: {line}"
    );

    // Logins at once with one hashing slot: some are shed, until a round has shed one.
    let mut shed = 0;
    for _ in 0..20 {
        if shed > 0 {
            break;
        }
        let logins = (0..16).map(|_| async {
            let res = hub
                .http
                .post(hub.url("/api/auth/login/"))
                .json(&json!({"username": "client", "password": "client-demo"}))
                .send()
                .await
                .unwrap();
            (
                res.status().as_u16(),
                res.headers().contains_key("retry-after"),
            )
        });
        let answers = futures::future::join_all(logins).await;
        assert!(
            answers
                .iter()
                .all(|a| *a == (200, false) || *a == (503, true)),
            "{answers:?}"
        );
        shed += answers.iter().filter(|a| a.0 == 503).count();
    }
    assert!(
        shed > 0,
        "twenty rounds of sixteen logins at once, none shed"
    );
    // The shed answers were read before this request began, so a line for any of them would
    // come before this one's.
    trickled_body_fails().await;
    hub.logged("the second failed request", 2, failed).await;
    assert_eq!(
        hub.count_logged(|l| l.contains("request failed")),
        2,
        "{shed} shed logins were logged:\n{}",
        hub.log_text()
    );
    hub.stop().await;
}
