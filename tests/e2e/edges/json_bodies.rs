use super::*;

/// Every JSON write checks its body alike, whether the endpoint takes it through the JSON
/// extractor or reads the raw bytes first (a send and a ticket's creation keep them for an
/// `Idempotency-Key`'s fingerprint): a body not declared JSON is 415, a body that is not JSON
/// or not an object is 400 with a `detail` saying so, and `application/…+json` is JSON.
pub(super) async fn every_json_write_checks_its_body_alike() {
    let hub = TestHub::start(&Backend::Sqlite).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    let project = hub.project("JSN", &[&admin, &ann]).await;
    let send = json!({"user_ids": [ann.id.0], "title": "t", "message": "m"});
    let ticket = json!({"project": project.id.0, "title": "Printer on fire"});
    let writes = [
        // Read as bytes first.
        ("POST", "/api/notifications/send/", &admin, send, 201),
        ("POST", "/api/tickets/", &ann, ticket, 201),
        // Through the extractor.
        (
            "PUT",
            "/api/notifications/preferences/",
            &ann,
            json!({"channels": {"email": false}}),
            200,
        ),
    ];
    for (method, path, user, good, created) in writes {
        let call = |content_type: Option<&'static str>, body: String| {
            let mut req = hub
                .http
                .request(method.parse().unwrap(), hub.url(path))
                .bearer_auth(hub.token(user))
                .body(body);
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            async move {
                let res = req.send().await.unwrap();
                let status = res.status().as_u16();
                (
                    status,
                    res.json::<serde_json::Value>().await.unwrap_or_default(),
                )
            }
        };
        let detail = |body: &serde_json::Value| body["detail"].as_str().unwrap_or("").to_owned();
        let good = good.to_string();
        for ct in [None, Some("text/plain"), Some("application/jsonp")] {
            let (status, body) = call(ct, good.clone()).await;
            assert_eq!(status, 415, "{method} {path} as {ct:?}: {body}");
            assert_eq!(
                detail(&body),
                "Unsupported media type; send Content-Type: application/json.",
                "{method} {path}"
            );
        }
        for (text, says) in [
            ("{not json", "JSON parse error - "),
            ("", "JSON parse error - "),
            ("{} trailing", "JSON parse error - "),
            ("[1, 2]", "Expected a JSON object."),
            ("  \"a string\"", "Expected a JSON object."),
            ("{\"title\": 5}", "JSON parse error - "),
        ] {
            let (status, body) = call(Some("application/json"), text.to_owned()).await;
            assert_eq!(status, 400, "{method} {path} with {text:?}: {body}");
            assert!(
                detail(&body).starts_with(says),
                "{method} {path} with {text:?}: {body}"
            );
        }
        let (status, body) =
            call(Some("application/vnd.tickethub+json; charset=utf-8"), good).await;
        assert_eq!(status, created, "{method} {path}: {body}");
    }
}
