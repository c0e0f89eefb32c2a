//! The OpenAPI document: it is OpenAPI 3, its operations are secured as documented, every
//! path it names is routed, and real responses match the schemas it
//! gives for them. The docs page is HTML that points at the document.

use reqwest::Method;
use serde_json::{json, Value};
use tickethub_actors::domain::Role;

use crate::harness::{Backend, TestHub};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn document(hub: &TestHub) -> Value {
    let res = hub
        .http
        .get(hub.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    res.json().await.unwrap()
}

/// Whether an operation requires the bearer scheme.
fn secured(op: &Value) -> bool {
    op["security"]
        .as_array()
        .is_some_and(|reqs| reqs.iter().any(|r| r.get("bearer").is_some()))
}

async fn document_lists_every_route() {
    // What the hub serves here does not depend on the database: once, on SQLite.
    let backend = Backend::Sqlite;
    let hub = TestHub::start(&backend).await;
    let doc = document(&hub).await;
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "not OpenAPI 3: {version:?}");
    assert_eq!(doc["info"]["title"], "tickethub");
    assert!(doc["info"]["description"]
        .as_str()
        .unwrap()
        .contains("/ws/notifications/"));
    // The served document is narrowed to this hub: preferences name only the routed types.
    let types = &doc["components"]["schemas"]["PreferencesUpdate"]["properties"]["types"];
    let routed = types["propertyNames"]["enum"]
        .as_array()
        .expect("an enum of types");
    assert!(routed.contains(&json!("ticket_created")), "{types}");
    assert!(!routed.contains(&json!("general")), "{types}");
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");
    assert_eq!(scheme["bearerFormat"], "JWT", "{scheme}");
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["required"], json!(["detail"]), "{error}");

    // The document is gathered from the routes that serve it: every operation is there,
    // secured unless it is one of the few open ones.
    const OPEN: [&str; 11] = [
        "get /api/push/vapid/",
        // An invitation's link is its own proof.
        "get /api/invitations/{token}/",
        "post /api/invitations/{token}/accept/",
        "post /api/auth/login/",
        "post /api/auth/refresh/",
        "post /api/auth/logout/",
        "post /api/auth/register/",
        "get /api/auth/registration/",
        "get /healthz",
        "get /readyz",
        "get /metrics",
    ];
    let mut wrong_security = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                let name = format!("{method} {path}");
                if secured(op) == OPEN.contains(&name.as_str()) {
                    wrong_security.push(name);
                }
            }
        }
    }
    assert!(
        wrong_security.is_empty(),
        "bearer security documented wrongly: {wrong_security:?}"
    );

    // Operation ids are unique, and every operation says what it answers.
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                let id = op["operationId"].as_str().unwrap_or_default();
                assert!(
                    ids.insert(id.to_owned()),
                    "{method} {path}: id {id:?} again"
                );
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{method} {path} has no responses"
                );
            }
        }
    }
}

/// Asks for every documented operation without a token: a secured one must answer 401 (so it
/// is routed and its security is real), an open one a status its document lists (never a 5xx,
/// nor 401, 404 or 405).
async fn documented_paths_are_routed_and_secured_as_documented(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let doc = document(&hub).await;
    let mut wrong = Vec::new();
    let mut count = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            count += 1;
            let url = path.replace("{id}", "1");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, body) = hub.call(method.clone(), &url, None, None).await;
            // The Web Push key is open, and not there on a hub that has none (PostgreSQL
            // without `--webpush-vapid-key`): a documented 404 that says so.
            let unconfigured = path == "/api/push/vapid/"
                && status == 404
                && body["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("not configured"));
            // No invitation has the token `{token}`: the documented 404 of an unknown link.
            let unknown_link = path.starts_with("/api/invitations/{token}/") && status == 404;
            let ok = if secured(op) {
                status == 401
            } else if unconfigured || unknown_link {
                op["responses"].get("404").is_some()
            } else {
                status < 500
                    && ![401, 404, 405].contains(&status)
                    && op["responses"].get(status.to_string()).is_some()
            };
            if !ok {
                wrong.push(format!("{method} {url}: {status} {body}"));
            }
        }
    }
    assert!(count >= 45, "only {count} operations documented");
    assert!(wrong.is_empty(), "documented but not as routed: {wrong:#?}");
}

/// Checks `value` against a schema of the document; returns what does not match.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        let target = &doc["components"]["schemas"][name];
        assert!(target.is_object(), "{at}: dangling reference {reference}");
        return check(doc, target, value, at);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema[key].as_array() {
            if options.iter().any(|o| check(doc, o, value, at).is_empty()) {
                return Vec::new();
            }
            return vec![format!("{at}: {value} matches no option of {schema}")];
        }
    }
    let mut errors = Vec::new();
    if let Some(parts) = schema["allOf"].as_array() {
        // Each part checks its own properties; unknown keys are those no part declares.
        let mut declared = Vec::new();
        for part in parts {
            let part = resolve(doc, part);
            declared.extend(properties(part));
            errors.extend(check_object(doc, part, value, at, false));
        }
        if let Some(map) = value.as_object() {
            for key in map.keys() {
                if !declared.contains(key) {
                    errors.push(format!("{at}.{key}: not in the schema"));
                }
            }
        }
        return errors;
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let type_ok = types.is_empty()
        || types.contains(&kind)
        || (kind == "integer" && types.contains(&"number"));
    if !type_ok {
        return vec![format!("{at}: {value} is not {types:?}")];
    }
    if let Some(values) = schema["enum"].as_array() {
        if !value.is_null() && !values.contains(value) {
            errors.push(format!("{at}: {value} is not one of {values:?}"));
        }
    }
    if let Value::Array(items) = value {
        for (i, item) in items.iter().enumerate() {
            errors.extend(check(doc, &schema["items"], item, &format!("{at}[{i}]")));
        }
    }
    if value.is_object() {
        errors.extend(check_object(doc, schema, value, at, true));
    }
    errors
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
        None => schema,
    }
}

fn properties(schema: &Value) -> Vec<String> {
    schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// Required keys are present and declared keys match their schemas; with `closed`, a key the
/// schema does not declare is an error too (unless it is a map, with `additionalProperties`).
fn check_object(doc: &Value, schema: &Value, value: &Value, at: &str, closed: bool) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(map) = value.as_object() else {
        return vec![format!("{at}: {value} is not an object")];
    };
    for key in schema["required"].as_array().into_iter().flatten() {
        let key = key.as_str().unwrap();
        if !map.contains_key(key) {
            errors.push(format!("{at}.{key}: required but absent"));
        }
    }
    let declared = schema["properties"].as_object();
    for (key, v) in map {
        let here = format!("{at}.{key}");
        match declared.and_then(|d| d.get(key)) {
            Some(property) => errors.extend(check(doc, property, v, &here)),
            None => match &schema["additionalProperties"] {
                Value::Object(_) => {
                    errors.extend(check(doc, &schema["additionalProperties"], v, &here))
                }
                _ if closed && declared.is_some() => {
                    errors.push(format!("{here}: not in the schema"))
                }
                _ => {}
            },
        }
    }
    errors
}

/// Asserts that a real response matches the schema the document gives for it.
fn conforms(doc: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not documented");
    let response = &op["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "{method} {path} answered {status}, which is not documented: {body}"
    );
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {status}: no JSON schema"
    );
    let errors = check(doc, schema, body, "$");
    assert!(
        errors.is_empty(),
        "{method} {path} {status} does not match its schema: {errors:#?}\n{body}"
    );
}

async fn responses_match_their_schemas(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let doc = document(&hub).await;
    let admin = hub.user_with("root", Role::Admin, true).await;
    let dev = hub.user("dora", Role::Developer).await;
    let client = hub.user("carl", Role::Client).await;
    let (a, d, c) = (hub.token(&admin), hub.token(&dev), hub.token(&client));

    // Authentication and users.
    let (status, body) = hub
        .post(
            "/api/auth/login/",
            None,
            json!({"username": "carl", "password": "carl-password"}),
        )
        .await;
    conforms(&doc, "post", "/api/auth/login/", status, &body);
    let (status, bad) = hub
        .post(
            "/api/auth/login/",
            None,
            json!({"username": "carl", "password": "wrong"}),
        )
        .await;
    conforms(&doc, "post", "/api/auth/login/", status, &bad);
    let refresh = body["refresh"].clone();
    let (status, body) = hub
        .post("/api/auth/refresh/", None, json!({ "refresh": refresh }))
        .await;
    conforms(&doc, "post", "/api/auth/refresh/", status, &body);
    let (status, body) = hub
        .post(
            "/api/auth/register/",
            None,
            json!({"username": "newbie", "password": "long-enough", "email": "n@example.test"}),
        )
        .await;
    conforms(&doc, "post", "/api/auth/register/", status, &body);
    let (status, body) = hub.get("/api/users/me/", Some(&c)).await;
    conforms(&doc, "get", "/api/users/me/", status, &body);
    let (status, body) = hub.get("/api/users/me/", None).await;
    conforms(&doc, "get", "/api/users/me/", status, &body);
    let (status, body) = hub
        .call(
            Method::PATCH,
            "/api/users/me/",
            Some(&c),
            Some(json!({"display_name": "Carl", "whatsapp_number": "+15551234567"})),
        )
        .await;
    conforms(&doc, "patch", "/api/users/me/", status, &body);
    let (status, body) = hub.get("/api/users/?role=developer", Some(&a)).await;
    conforms(&doc, "get", "/api/users/", status, &body);

    // Projects.
    let (status, body) = hub
        .post(
            "/api/projects/",
            Some(&a),
            json!({"key": "WEB", "name": "Website", "member_ids": [admin.id.0, dev.id.0, client.id.0]}),
        )
        .await;
    conforms(&doc, "post", "/api/projects/", status, &body);
    let project = body["id"].as_i64().unwrap();
    let (status, body) = hub
        .post(
            "/api/projects/",
            Some(&c),
            json!({"key": "NOPE", "name": "No"}),
        )
        .await;
    conforms(&doc, "post", "/api/projects/", status, &body);
    let (status, body) = hub.get("/api/projects/", Some(&c)).await;
    conforms(&doc, "get", "/api/projects/", status, &body);

    // Tickets, their comments and actions.
    let (status, body) = hub
        .post(
            "/api/tickets/",
            Some(&c),
            json!({"project": project, "title": "Broken", "priority": "HIGH", "category": "BUG"}),
        )
        .await;
    conforms(&doc, "post", "/api/tickets/", status, &body);
    let id = body["id"].as_i64().unwrap();
    let ticket = |suffix: &str| format!("/api/tickets/{id}/{suffix}");
    let (status, body) = hub
        .post(
            &ticket("comments/"),
            Some(&c),
            json!({"body": "Please fix."}),
        )
        .await;
    conforms(&doc, "post", "/api/tickets/{id}/comments/", status, &body);
    let (status, body) = hub.get(&ticket("comments/"), Some(&c)).await;
    conforms(&doc, "get", "/api/tickets/{id}/comments/", status, &body);
    let (status, body) = hub.get(&ticket(""), Some(&c)).await;
    conforms(&doc, "get", "/api/tickets/{id}/", status, &body);
    let (status, body) = hub.get("/api/tickets/999999/", Some(&c)).await;
    conforms(&doc, "get", "/api/tickets/{id}/", status, &body);
    let (status, body) = hub.get("/api/tickets/?status=NEW", Some(&a)).await;
    conforms(&doc, "get", "/api/tickets/", status, &body);
    let (status, body) = hub.get("/api/tickets/?status=nope", Some(&a)).await;
    conforms(&doc, "get", "/api/tickets/", status, &body);
    let (status, body) = hub.post(&ticket("approve/"), Some(&c), json!({})).await;
    conforms(&doc, "post", "/api/tickets/{id}/approve/", status, &body);
    assert_eq!(status, 409, "{body}");
    let (status, body) = hub.post(&ticket("open_ticket/"), Some(&d), json!({})).await;
    conforms(
        &doc,
        "post",
        "/api/tickets/{id}/open_ticket/",
        status,
        &body,
    );
    assert_eq!(status, 403, "{body}");
    let steps = [
        (
            "open_ticket/",
            "/api/tickets/{id}/open_ticket/",
            &a,
            json!({}),
        ),
        (
            "assign/",
            "/api/tickets/{id}/assign/",
            &a,
            json!({"developer_ids": [dev.id.0]}),
        ),
        (
            "start_work/",
            "/api/tickets/{id}/start_work/",
            &d,
            json!({}),
        ),
        (
            "finish_work/",
            "/api/tickets/{id}/finish_work/",
            &d,
            json!({}),
        ),
        (
            "reject/",
            "/api/tickets/{id}/reject/",
            &c,
            json!({"reason": "Still broken."}),
        ),
        (
            "start_work/",
            "/api/tickets/{id}/start_work/",
            &d,
            json!({}),
        ),
        (
            "finish_work/",
            "/api/tickets/{id}/finish_work/",
            &d,
            json!({}),
        ),
        ("approve/", "/api/tickets/{id}/approve/", &c, json!({})),
    ];
    for (suffix, doc_path, token, body) in steps {
        let (status, res) = hub.post(&ticket(suffix), Some(token), body).await;
        assert_eq!(status, 200, "{suffix}: {res}");
        conforms(&doc, "post", doc_path, status, &res);
    }

    // Notifications: the admin heard about the new ticket, the client about every step.
    let (status, body) = hub.get("/api/notifications/", Some(&c)).await;
    conforms(&doc, "get", "/api/notifications/", status, &body);
    let first = body["results"][0]["id"].as_i64().expect("a notification");
    let one = |suffix: &str| format!("/api/notifications/{first}/{suffix}");
    let (status, body) = hub.get("/api/notifications/unread/", Some(&c)).await;
    conforms(&doc, "get", "/api/notifications/unread/", status, &body);
    let (status, body) = hub.get("/api/notifications/unread_count/", Some(&c)).await;
    conforms(
        &doc,
        "get",
        "/api/notifications/unread_count/",
        status,
        &body,
    );
    let (status, body) = hub.get(&one(""), Some(&c)).await;
    conforms(&doc, "get", "/api/notifications/{id}/", status, &body);
    let (status, body) = hub.post(&one("mark_as_read/"), Some(&c), json!({})).await;
    conforms(
        &doc,
        "post",
        "/api/notifications/{id}/mark_as_read/",
        status,
        &body,
    );
    let (status, body) = hub.post(&one("mark_as_unread/"), Some(&c), json!({})).await;
    conforms(
        &doc,
        "post",
        "/api/notifications/{id}/mark_as_unread/",
        status,
        &body,
    );
    let (status, body) = hub.get(&one("deliveries/"), Some(&c)).await;
    conforms(
        &doc,
        "get",
        "/api/notifications/{id}/deliveries/",
        status,
        &body,
    );
    assert!(
        body["deliveries"].as_array().unwrap().len() >= 2,
        "the in-app record and an email: {body}"
    );
    let (status, body) = hub
        .post("/api/notifications/mark_all_as_read/", Some(&c), json!({}))
        .await;
    conforms(
        &doc,
        "post",
        "/api/notifications/mark_all_as_read/",
        status,
        &body,
    );
    let (status, body) = hub
        .call(
            Method::PUT,
            "/api/notifications/preferences/",
            Some(&c),
            Some(json!({"channels": {"whatsapp": false}, "types": {"ticket_created": {"email": false}}})),
        )
        .await;
    conforms(
        &doc,
        "put",
        "/api/notifications/preferences/",
        status,
        &body,
    );
    let (status, body) = hub.get("/api/notifications/preferences/", Some(&c)).await;
    conforms(
        &doc,
        "get",
        "/api/notifications/preferences/",
        status,
        &body,
    );
    let (status, body) = hub
        .post(
            "/api/notifications/send/",
            Some(&a),
            json!({"role": "client", "title": "Hello", "message": "Maintenance tonight.", "data": {"k": 1}}),
        )
        .await;
    conforms(&doc, "post", "/api/notifications/send/", status, &body);
    let (status, body) = hub
        .post(
            "/api/notifications/send/",
            Some(&c),
            json!({"role": "client", "title": "Hello", "message": "Hi."}),
        )
        .await;
    conforms(&doc, "post", "/api/notifications/send/", status, &body);
    let (status, body) = hub.call(Method::DELETE, &one(""), Some(&c), None).await;
    assert_eq!(status, 204, "{body}");
    assert!(doc["paths"]["/api/notifications/{id}/"]["delete"]["responses"]["204"].is_object());
    let (status, body) = hub.get(&one(""), Some(&c)).await;
    conforms(&doc, "get", "/api/notifications/{id}/", status, &body);
    let (status, body) = hub
        .call(
            Method::DELETE,
            "/api/notifications/delete-all/",
            Some(&c),
            None,
        )
        .await;
    conforms(
        &doc,
        "delete",
        "/api/notifications/delete-all/",
        status,
        &body,
    );

    // Operations.
    let (status, body) = hub.get("/healthz", None).await;
    conforms(&doc, "get", "/healthz", status, &body);
    let (status, body) = hub.get("/readyz", None).await;
    conforms(&doc, "get", "/readyz", status, &body);
}

async fn docs_page_is_html() {
    // What the hub serves here does not depend on the database: once, on SQLite.
    let backend = Backend::Sqlite;
    let hub = TestHub::start(&backend).await;
    let res = hub.http.get(hub.url("/api/docs/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = res.text().await.unwrap();
    assert!(page
        .trim_start()
        .to_lowercase()
        .starts_with("<!doctype html>"));
    assert!(page.contains("/api/openapi.json"), "{page}");
    // Nothing is loaded from elsewhere: the renderer is the hub's own file.
    assert!(!page.contains("https://"), "{page}");
    assert!(
        page.contains("<script src=\"/api/docs/redoc.standalone.js\">"),
        "{page}"
    );
    let res = hub
        .http
        .get(hub.url("/api/docs/redoc.standalone.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(res.text().await.unwrap().len() > 500_000);
    let licence = hub
        .http
        .get(hub.url("/api/docs/LICENSE.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(licence.status(), 200);
    assert!(licence.text().await.unwrap().contains("MIT License"));
}

crate::trials! {
    both: [
        documented_paths_are_routed_and_secured_as_documented,
        responses_match_their_schemas,
    ],
    tests: [
        docs_page_is_html,
        document_lists_every_route,],
    sync: [],
}
