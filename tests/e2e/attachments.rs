//! Files attached to tickets: uploaded as multipart, kept in a folder beside the database or
//! in an S3-compatible bucket (an `s3s-fs` server the test starts, checking signatures),
//! served only to those who may see the ticket, deleted and erased for good.

use reqwest::Method;
use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};
use tickethub_actors::ports::Purgeable;

use crate::harness::{db_number, eventually, Backend, Crew, TestHub};
use crate::tickets::{cast, Cast};

mod s3;

/// A PNG's signature and a little more: what the hub checks a picture by.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR tiny picture";

/// One part of a multipart body: its name, file name, type and bytes.
#[derive(Clone)]
pub struct Part<'a> {
    pub name: &'a str,
    pub file_name: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub bytes: &'a [u8],
}

/// A `file` part.
pub fn file<'a>(file_name: &'a str, content_type: &'a str, bytes: &'a [u8]) -> Part<'a> {
    Part {
        name: "file",
        file_name: Some(file_name),
        content_type: Some(content_type),
        bytes,
    }
}

const BOUNDARY: &str = "tickethub-test-boundary-7f3a";

/// A `multipart/form-data` body of `parts`, written by hand so that tests can send what a
/// browser would not.
pub fn multipart(parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{}\"", p.name);
        if let Some(f) = p.file_name {
            disposition.push_str(&format!("; filename=\"{f}\""));
        }
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        if let Some(t) = p.content_type {
            body.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(p.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Uploads `parts` to ticket `id` as `user`; the status and the answer.
pub async fn upload(hub: &TestHub, user: &User, id: i64, parts: &[Part<'_>]) -> (u16, Value) {
    let res = hub
        .http
        .post(hub.url(&format!("/api/tickets/{id}/attachments/")))
        .bearer_auth(hub.token(user))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(multipart(parts))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Downloads `path` (as `user`, or with no header); the status, the headers and the bytes.
pub async fn download(
    hub: &TestHub,
    user: Option<&User>,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = hub.http.get(hub.url(path));
    if let Some(user) = user {
        req = req.bearer_auth(hub.token(user));
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.bytes().await.unwrap().to_vec())
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
}

/// Whether the object of attachment `id` is marked removed in the database.
async fn removed(hub: &TestHub, id: i64) -> bool {
    db_number(
        &hub.db,
        &format!("SELECT COUNT(*) FROM attachments WHERE id = {id} AND removed_at IS NOT NULL"),
    )
    .await
        == 1
}

/// A ticket of `c1`'s assigned to `d1`, with its id.
async fn assigned_ticket(hub: &TestHub, c: &Cast) -> i64 {
    let crew = Crew {
        creator: &c.c1,
        admin: &c.a1,
        devs: &[&c.d1],
    };
    let t = hub
        .ticket_in(
            "ASSIGNED",
            &crew,
            json!({"project": c.project, "title": "Screenshot inside"}),
        )
        .await;
    t["id"].as_i64().unwrap()
}

async fn files_are_attached_served_and_deleted_by_the_right_people(backend: Backend) {
    let hub = TestHub::start_with(&backend, |c| c.attachments.attachment_max_bytes = 4096).await;
    let c = cast(&hub).await;
    let outsider = hub.user("c3", Role::Client).await;
    hub.project("OTHER", &[&outsider]).await;
    let id = assigned_ticket(&hub, &c).await;
    // A board socket of the project hears that the ticket's files changed.
    let mut board = crate::harness::Ws::connect(&hub.ws_url(&format!(
        "/ws/projects/{}/tickets/?token={}",
        c.project,
        hub.token(&c.d1)
    )))
    .await;
    assert_eq!(board.next_json().await["type"], "connection_established");

    // A picture, by the creator: shown in place, with a signed link.
    let (status, png) = upload(&hub, &c.c1, id, &[file("shot.png", "image/png", PNG)]).await;
    assert_eq!(status, 201, "{png}");
    let changed = board.next_of("attachments_changed").await;
    assert_eq!(changed["data"]["ticket_id"], id, "{changed}");
    assert_eq!(changed["data"]["key"], "WEB-1", "{changed}");
    assert_eq!(png["file_name"], "shot.png");
    assert_eq!(png["content_type"], "image/png");
    assert_eq!(png["size"], PNG.len());
    assert_eq!(png["inline"], true);
    assert_eq!(png["uploaded_by"], c.c1.id.0);
    assert_eq!(png["uploaded_by_name"], "c1 display");
    assert_eq!(png["deleted"], false);
    let png_id = png["id"].as_i64().unwrap();
    let path = format!("/api/tickets/{id}/attachments/{png_id}/");
    for member in [&c.c1, &c.d1, &c.c2, &c.a2] {
        let (status, headers, bytes) = download(&hub, Some(member), &path).await;
        assert_eq!(status, 200, "{}", member.username);
        assert_eq!(bytes, PNG);
        assert_eq!(header(&headers, "content-type"), "image/png");
        assert!(
            header(&headers, "content-disposition").starts_with("inline; filename=\"shot.png\"")
        );
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
        assert_eq!(
            header(&headers, "content-security-policy"),
            "default-src 'none'; sandbox"
        );
    }
    // Nobody outside the project, token or not.
    assert_eq!(download(&hub, Some(&outsider), &path).await.0, 404);
    assert_eq!(download(&hub, None, &path).await.0, 401);
    // The link works without a header (as a page's <img> asks), and only as signed.
    let link = png["url"].as_str().unwrap();
    assert!(link.starts_with(&format!("{path}?access=")), "{link}");
    let (status, _, bytes) = download(&hub, None, link).await;
    assert_eq!((status, bytes.as_slice()), (200, PNG));
    let forged = format!("{}0", &link[..link.len() - 1]);
    let forged = if forged == link {
        format!("{}1", &link[..link.len() - 1])
    } else {
        forged
    };
    assert_eq!(download(&hub, None, &forged).await.0, 401);
    assert_eq!(
        download(&hub, None, &format!("{path}?access=bm90IGEgdG9rZW4.00"))
            .await
            .0,
        401
    );

    // A PDF by the assignee: a download, whatever a browser would make of it.
    let (status, pdf) = upload(
        &hub,
        &c.d1,
        id,
        &[file("report.pdf", "application/pdf", b"%PDF-1.4 x")],
    )
    .await;
    assert_eq!(status, 201, "{pdf}");
    assert_eq!(pdf["inline"], false);
    let pdf_path = format!("/api/tickets/{id}/attachments/{}/", pdf["id"]);
    // A link signed for one file opens no other.
    let other = format!(
        "{pdf_path}?access={}",
        link.split("access=").nth(1).unwrap()
    );
    assert_eq!(download(&hub, None, &other).await.0, 401);
    let (_, headers, _) = download(&hub, Some(&c.c1), &pdf_path).await;
    assert_eq!(
        header(&headers, "content-disposition"),
        "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
    );
    // A name with a path and markup: its last part, kept as text; the header stays intact.
    let nasty = "../../<img src=x onerror=alert(1)>\u{202E}.txt";
    let (status, txt) = upload(&hub, &c.c1, id, &[file(nasty, "text/plain", b"hello")]).await;
    assert_eq!(status, 201, "{txt}");
    assert_eq!(txt["file_name"], "<img src=x onerror=alert(1)>.txt");
    let (_, headers, _) = download(
        &hub,
        Some(&c.c1),
        &format!("/api/tickets/{id}/attachments/{}/", txt["id"]),
    )
    .await;
    assert_eq!(
        header(&headers, "content-disposition"),
        "attachment; filename=\"<img src=x onerror=alert(1)>.txt\"; \
         filename*=UTF-8''%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.txt"
    );
    // No declared type: the extension decides.
    let (status, csv) = upload(
        &hub,
        &c.c1,
        id,
        &[Part {
            name: "file",
            file_name: Some("rows.csv"),
            content_type: None,
            bytes: b"a,b",
        }],
    )
    .await;
    assert_eq!(
        (status, csv["content_type"].as_str()),
        (201, Some("text/csv"))
    );

    // What is refused, and why.
    let refused = [
        (
            file("page.html", "text/html", b"<script>alert(1)</script>"),
            415,
        ),
        (
            file("logo.svg", "image/svg+xml", b"<svg onload=alert(1)/>"),
            415,
        ),
        (file("run.bin", "application/octet-stream", b"\x7fELF"), 415),
        (
            file("fake.png", "image/png", b"<svg onload=alert(1)/>"),
            400,
        ),
        (file("empty.txt", "text/plain", b""), 400),
        (file("big.txt", "text/plain", &[b'x'; 4097]), 413),
    ];
    for (part, expect) in refused {
        let name = part.file_name.unwrap();
        let (status, res) = upload(&hub, &c.c1, id, &[part]).await;
        assert_eq!(status, expect, "{name}: {res}");
        assert!(
            res["detail"].as_str().unwrap().starts_with("file: "),
            "{res}"
        );
    }
    let (status, res) = upload(
        &hub,
        &c.c1,
        id,
        &[file("ok.txt", "text/plain", &[b'x'; 4096])],
    )
    .await;
    assert_eq!(status, 201, "{res}");
    let (status, res) = upload(&hub, &c.c1, id, &[file("html.txt", "text/html", b"x")]).await;
    assert_eq!(status, 415);
    assert!(
        res["allowed"]
            .as_array()
            .unwrap()
            .contains(&json!("image/png")),
        "{res}"
    );
    let two = [
        file("a.txt", "text/plain", b"a"),
        file("b.txt", "text/plain", b"b"),
    ];
    assert_eq!(upload(&hub, &c.c1, id, &two).await.0, 400);
    let none = [Part {
        name: "other",
        file_name: None,
        content_type: None,
        bytes: b"x",
    }];
    assert_eq!(upload(&hub, &c.c1, id, &none).await.0, 400);
    let extra = [none[0].clone(), file("a.txt", "text/plain", b"a")];
    assert_eq!(upload(&hub, &c.c1, id, &extra).await.0, 400);
    let (status, res) = hub
        .call(
            Method::POST,
            &format!("/api/tickets/{id}/attachments/"),
            Some(&hub.token(&c.c1)),
            Some(json!({"file": "x"})),
        )
        .await;
    assert_eq!(status, 400, "{res}");
    // Who may attach: not a member who is neither creator nor assignee, nor an outsider.
    let one = [file("a.txt", "text/plain", b"a")];
    assert_eq!(upload(&hub, &c.d2, id, &one).await.0, 403);
    assert_eq!(upload(&hub, &c.c2, id, &one).await.0, 403);
    assert_eq!(upload(&hub, &outsider, id, &one).await.0, 404);
    assert_eq!(upload(&hub, &c.c1, 999_999, &one).await.0, 404);

    // Listed with the ticket and on their own.
    let detail = hub.get_as(&c.d1, &format!("/api/tickets/{id}/"), 200).await;
    let names: Vec<&str> = detail["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["file_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "shot.png",
            "report.pdf",
            "<img src=x onerror=alert(1)>.txt",
            "rows.csv",
            "ok.txt"
        ]
    );
    let list = hub
        .get_as(&c.c2, &format!("/api/tickets/{id}/attachments/"), 200)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 5);
    assert_eq!(
        hub.call(
            Method::GET,
            &format!("/api/tickets/{id}/attachments/"),
            Some(&hub.token(&outsider)),
            None
        )
        .await
        .0,
        404
    );

    // Deleted by its uploader or an admin: a tombstone, the bytes gone.
    let del = |u: &User, p: &str| {
        let token = hub.token(u);
        let p = p.to_owned();
        let hub = &hub;
        async move { hub.call(Method::DELETE, &p, Some(&token), None).await.0 }
    };
    assert_eq!(del(&c.d1, &path).await, 403);
    assert_eq!(del(&outsider, &path).await, 404);
    assert_eq!(del(&c.c1, &path).await, 204);
    assert_eq!(
        board.next_of("attachments_changed").await["data"]["ticket_id"],
        id
    );
    assert_eq!(del(&c.c1, &path).await, 204);
    assert_eq!(del(&c.a2, &pdf_path).await, 204);
    assert_eq!(download(&hub, Some(&c.c1), &path).await.0, 404);
    assert_eq!(download(&hub, None, link).await.0, 404);
    let list = hub
        .get_as(&c.c1, &format!("/api/tickets/{id}/attachments/"), 200)
        .await;
    assert_eq!(list[0]["deleted"], true);
    assert_eq!(list[0]["url"], Value::Null);
    assert_eq!(list[0]["file_name"], "shot.png");
    eventually("the deleted files' objects are removed", || async {
        removed(&hub, png_id).await && removed(&hub, pdf["id"].as_i64().unwrap()).await
    })
    .await;

    // Retention purges the tombstones once their objects are gone.
    let later = chrono::Utc::now() + chrono::TimeDelta::seconds(5);
    assert_eq!(
        hub.store
            .purgeable(Purgeable::RemovedAttachments, later)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        hub.store
            .purge(Purgeable::RemovedAttachments, later, 100)
            .await
            .unwrap(),
        2
    );
    let list = hub
        .get_as(&c.c1, &format!("/api/tickets/{id}/attachments/"), 200)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 3);

    // An approved ticket takes no more files, and keeps those it has.
    hub.post_as(
        &c.d1,
        &format!("/api/tickets/{id}/start_work/"),
        json!({}),
        200,
    )
    .await;
    hub.post_as(
        &c.d1,
        &format!("/api/tickets/{id}/finish_work/"),
        json!({}),
        200,
    )
    .await;
    hub.post_as(
        &c.c1,
        &format!("/api/tickets/{id}/approve/"),
        json!({}),
        200,
    )
    .await;
    assert_eq!(upload(&hub, &c.c1, id, &one).await.0, 409);
    let csv_path = format!("/api/tickets/{id}/attachments/{}/", csv["id"]);
    assert_eq!(del(&c.c1, &csv_path).await, 409);
    assert_eq!(download(&hub, Some(&c.c1), &csv_path).await.0, 200);
}

async fn erasing_a_person_removes_the_files_they_attached(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let c = cast(&hub).await;
    let id = assigned_ticket(&hub, &c).await;
    let (_, mine) = upload(&hub, &c.c1, id, &[file("me.png", "image/png", PNG)]).await;
    let (_, theirs) = upload(&hub, &c.d1, id, &[file("log.txt", "text/plain", b"log")]).await;
    let link = mine["url"].as_str().unwrap().to_owned();
    assert_eq!(download(&hub, None, &link).await.0, 200);
    hub.call(
        Method::DELETE,
        &format!("/api/users/{}/?erase=true", c.c1.id.0),
        Some(&hub.token(&c.a1)),
        None,
    )
    .await;
    let mine_id = mine["id"].as_i64().unwrap();
    eventually("the erased person's file is removed", || async {
        removed(&hub, mine_id).await
    })
    .await;
    // Their link opens nothing; the other person's file stays.
    assert_eq!(download(&hub, None, &link).await.0, 401);
    let list = hub
        .get_as(&c.d1, &format!("/api/tickets/{id}/attachments/"), 200)
        .await;
    assert_eq!(list[0]["deleted"], true);
    assert_eq!(list[0]["uploaded_by_name"], "Erased user");
    assert_eq!(list[1]["deleted"], false);
    let theirs_path = format!("/api/tickets/{id}/attachments/{}/", theirs["id"]);
    assert_eq!(download(&hub, Some(&c.d1), &theirs_path).await.2, b"log");
    assert!(!removed(&hub, theirs["id"].as_i64().unwrap()).await);
}

/// A PostgreSQL hub needs a place for files: without one it says so, and the rest works.
async fn a_hub_without_a_place_for_files_says_so() {
    let backend = Backend::postgres();
    let hub = TestHub::start_with(&backend, |c| c.attachments.attachments_dir = None).await;
    let c = cast(&hub).await;
    let id = assigned_ticket(&hub, &c).await;
    let (status, res) = upload(&hub, &c.c1, id, &[file("a.txt", "text/plain", b"a")]).await;
    assert_eq!(status, 503, "{res}");
    assert!(
        res["detail"]
            .as_str()
            .unwrap()
            .contains("--attachments-dir"),
        "{res}"
    );
    let detail = hub.get_as(&c.c1, &format!("/api/tickets/{id}/"), 200).await;
    assert_eq!(detail["attachments"], json!([]));
}

/// An SQLite hub keeps them in a folder beside its database file.
async fn an_sqlite_hub_keeps_files_beside_its_database() {
    let hub = TestHub::start(&Backend::Sqlite).await;
    let c = cast(&hub).await;
    let id = assigned_ticket(&hub, &c).await;
    let (status, res) = upload(&hub, &c.c1, id, &[file("a.txt", "text/plain", b"beside")]).await;
    assert_eq!(status, 201, "{res}");
    let db_file = hub.db.url.strip_prefix("sqlite://").unwrap();
    let folder = std::path::PathBuf::from(format!("{db_file}.attachments/tickets/{id}"));
    let stored: Vec<_> = std::fs::read_dir(&folder).unwrap().collect();
    assert_eq!(stored.len(), 1);
    let bytes = std::fs::read(stored[0].as_ref().unwrap().path()).unwrap();
    assert_eq!(bytes, b"beside");
}

async fn an_s3_bucket_keeps_the_files(backend: Backend) {
    let bucket = s3::Bucket::start("tickethub-files").await;
    let hub = TestHub::start_with(&backend, |c| {
        bucket.configure(&mut c.attachments);
    })
    .await;
    let c = cast(&hub).await;
    let id = assigned_ticket(&hub, &c).await;
    let (status, png) = upload(&hub, &c.c1, id, &[file("shot.png", "image/png", PNG)]).await;
    assert_eq!(status, 201, "{png}");
    // The object is in the bucket's folder, under the ticket.
    let objects = bucket.objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert!(
        objects[0].starts_with(&format!("tickets/{id}/")),
        "{objects:?}"
    );
    let (status, _, bytes) = download(&hub, None, png["url"].as_str().unwrap()).await;
    assert_eq!((status, bytes.as_slice()), (200, PNG));
    let path = format!("/api/tickets/{id}/attachments/{}/", png["id"]);
    assert_eq!(
        hub.call(Method::DELETE, &path, Some(&hub.token(&c.c1)), None)
            .await
            .0,
        204
    );
    let png_id = png["id"].as_i64().unwrap();
    eventually("the object leaves the bucket", || async {
        removed(&hub, png_id).await
    })
    .await;
    assert!(bucket.objects().is_empty());

    // A hub with the wrong secret is refused by the bucket: the upload fails cleanly.
    let wrong = TestHub::start_with(&backend, |c| {
        bucket.configure(&mut c.attachments);
        c.attachments.attachments_s3_secret_access_key = Some("not-the-secret".into());
    })
    .await;
    let w = cast(&wrong).await;
    let wid = assigned_ticket(&wrong, &w).await;
    let (status, res) = upload(&wrong, &w.c1, wid, &[file("a.txt", "text/plain", b"a")]).await;
    assert_eq!(status, 503, "{res}");
    assert!(bucket.objects().is_empty());
}

crate::trials! {
    both: [
        files_are_attached_served_and_deleted_by_the_right_people,
        erasing_a_person_removes_the_files_they_attached,
        an_s3_bucket_keeps_the_files,
    ],
    tests: [
        a_hub_without_a_place_for_files_says_so,
        an_sqlite_hub_keeps_files_beside_its_database,
    ],
    sync: [],
}
