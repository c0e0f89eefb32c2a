//! The pages the hub serves, in a real headless Chromium: `tests/browser/demo.mjs` drives the
//! demo client at `/`, `tests/browser/operator.mjs` the operator page at `/admin/`, and
//! `tests/browser/escalations.mjs` its escalation steps and trace, `tests/browser/analytics.mjs`
//! its delivery analytics, `tests/browser/push.mjs` the
//! demo client's browser notifications and the service worker `/sw.js`,
//! `tests/browser/settings.mjs` the settings page at `/settings/`, `tests/browser/manage.mjs`
//! the administration page at `/manage/` with invitations and join requests in the workspace,
//! and
//! `tests/browser/docs.mjs` the API reference at `/api/docs/` with every request to another host
//! refused.
//!
//! They need `node`, `/usr/bin/chromium` and `node_modules/playwright-core`: the packages are
//! installed (`npm ci`) when missing, and without node or Chromium the tests fail with the
//! command that installs them (`bash .ci/test` installs everything). Screenshots land in
//! `target/test-artifacts/`.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use tickethub_actors::domain::Role;

use crate::harness::{Backend, TestHub};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CHROMIUM: &str = "/usr/bin/chromium";

/// Makes sure node, Chromium and playwright-core are here: playwright-core is installed
/// (`npm ci`, once) when it is missing; without node or Chromium the test fails with the one
/// command that installs them.
fn require_browser() {
    crate::harness::require_node();
    if !Path::new(CHROMIUM).exists() {
        panic!(
            "{CHROMIUM} is missing: install it with `apt-get update && apt-get -o 'DPkg::Post-Invoke::=' install -y chromium chromium-driver`, or run the suite with `bash .ci/test`, which does"
        );
    }
    crate::harness::npm_packages();
}

/// Something the test does while a script runs, when the script prints a line containing
/// `line`.
struct Cue<'a> {
    line: &'static str,
    action: Pin<Box<dyn Future<Output = ()> + Send + 'a>>,
}

/// Runs `node tests/browser/<script> <base-url> <args…>` and fails with its output unless it
/// exits 0.
async fn run_script(script: &str, hub: &TestHub, args: &[String]) {
    run_script_with(script, hub, args, None).await;
}

/// [`run_script`], running the cue's action (once) when the script prints its line; fails if
/// the script never does.
async fn run_script_with(script: &str, hub: &TestHub, args: &[String], mut cue: Option<Cue<'_>>) {
    let path = Path::new(ROOT).join("tests/browser").join(script);
    let mut command = tokio::process::Command::new("node");
    command
        .arg(&path)
        .arg(hub.url(""))
        .args(args)
        .current_dir(ROOT)
        .env("TICKETHUB_TEST_PATIENCE", crate::harness::patience_factor())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("node starts");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let expected = cue.as_ref().map(|c| c.line);
    let mut stdout = String::new();
    let run = async {
        while let Some(line) = lines
            .next_line()
            .await
            .expect("the script's output is read")
        {
            stdout.push_str(&line);
            stdout.push('\n');
            if cue.as_ref().is_some_and(|c| line.contains(c.line)) {
                cue.take().expect("a cue").action.await;
            }
        }
        child.wait().await.expect("node runs")
    };
    // A scenario is a few dozen steps, each waiting at most a patience for what it expects:
    // sixteen patiences (240 s unscaled) bound the whole script without racing it.
    let limit = crate::harness::patience() * 16;
    let status = tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish in {limit:?}"));
    let stderr = errors.await.unwrap_or_default();
    assert!(
        status.success(),
        "{script} failed ({status}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    if let (Some(line), Some(_)) = (expected, cue) {
        panic!("{script} passed without printing {line:?}:\n{stdout}");
    }
    println!("{stdout}");
}

/// `role=username:password` for a harness user.
fn credentials(role: &str, username: &str) -> String {
    format!("{role}={username}:{username}-password")
}

async fn pages_are_served_with_their_types() {
    let hub = TestHub::start(&Backend::Sqlite).await;
    for (path, kind, needle) in [
        ("/", "text/html", "/assets/demo.js"),
        ("/admin/", "text/html", "/assets/admin.js"),
        ("/settings/", "text/html", "/assets/settings.js"),
        ("/manage/", "text/html", "/assets/manage.js"),
        (
            "/assets/manage-access.js",
            "text/javascript",
            "/api/admin/invitations/",
        ),
        ("/assets/join.js", "text/javascript", "/api/join-requests/"),
        (
            "/assets/settings.js",
            "text/javascript",
            "/api/auth/logout-everywhere/",
        ),
        (
            "/assets/settings-parts.js",
            "text/javascript",
            "/api/notifications/preferences/",
        ),
        ("/assets/app.css", "text/css", ".topbar"),
        (
            "/assets/common.js",
            "text/javascript",
            "export class Session",
        ),
        ("/assets/demo.js", "text/javascript", "tickethub.v1"),
        ("/assets/admin.js", "text/javascript", "/api/admin/actors"),
        (
            "/assets/tickethub-client.js",
            "text/javascript",
            "export class TicketHub",
        ),
        ("/assets/icon.svg", "image/svg+xml", "<svg"),
        ("/favicon.ico", "image/svg+xml", "<svg"),
    ] {
        let res = hub.http.get(hub.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert!(
            header("content-security-policy").contains("script-src 'self'"),
            "{path}"
        );
        assert!(res.text().await.unwrap().contains(needle), "{path}");
    }
    let res = hub.http.get(hub.url("/admin")).send().await.unwrap();
    assert_eq!(res.url().path(), "/admin/", "/admin redirects to /admin/");
    let res = hub.http.get(hub.url("/settings")).send().await.unwrap();
    assert_eq!(
        res.url().path(),
        "/settings/",
        "/settings redirects to /settings/"
    );
    let res = hub.http.get(hub.url("/manage")).send().await.unwrap();
    assert_eq!(
        res.url().path(),
        "/manage/",
        "/manage redirects to /manage/"
    );
    let workspace = hub
        .http
        .get(hub.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        workspace.contains("href=\"/settings/\""),
        "the workspace links to the settings"
    );
    assert!(
        workspace.contains("href=\"/manage/\""),
        "the workspace links to the administration page"
    );
    let (status, _) = hub.get("/assets/missing.js", None).await;
    assert_eq!(status, 404);
}

async fn demo_page_shows_a_ticket_lifecycle_in_real_time() {
    run_with_crew("demo.mjs").await;
}

async fn operator_page_shows_the_live_supervision_tree() {
    require_browser();
    let hub = TestHub::start(&Backend::Sqlite).await;
    let admin = hub.user_with("ada", Role::Admin, true).await;
    let client = hub.user("carl", Role::Client).await;
    hub.project("WEB", &[&admin, &client]).await;
    run_script(
        "operator.mjs",
        &hub,
        &[
            credentials("admin", &admin.username),
            credentials("client", &client.username),
        ],
    )
    .await;
}

async fn demo_page_shows_the_board_presence_and_typing() {
    require_browser();
    let hub = TestHub::start_with(&Backend::Sqlite, |c| c.presence_grace_ms = 500).await;
    let admin = hub.user_with("ada", Role::Admin, true).await;
    let client = hub.user("carl", Role::Client).await;
    let developer = hub.user("dev", Role::Developer).await;
    let project = hub.project("WEB", &[&client, &developer]).await;
    hub.post_as(
        &client,
        "/api/tickets/",
        serde_json::json!({"project": project.id.0, "title": "Checkout is slow", "priority": "MEDIUM", "category": "BUG"}),
        201,
    )
    .await;
    run_script(
        "rooms.mjs",
        &hub,
        &[
            credentials("client", &client.username),
            credentials("developer", &developer.username),
            credentials("admin", &admin.username),
        ],
    )
    .await;
}

/// The demo page as a ticket workspace, at desktop and phone widths: finding, a ticket's own
/// address, history and comments, notifications that open their ticket, sign-up, dialogs and
/// accessibility. Its screenshots go to `docs/screenshots/`.
async fn demo_page_works_as_a_ticket_workspace_on_desktop_and_phone() {
    run_with_crew("workspace.mjs").await;
}

/// Runs `script` on a fresh hub with a client, an admin and a developer in one project, which
/// holds no ticket yet.
async fn run_with_crew(script: &str) {
    require_browser();
    let hub = TestHub::start(&Backend::Sqlite).await;
    let admin = hub.user_with("ada", Role::Admin, true).await;
    let client = hub.user("carl", Role::Client).await;
    let developer = hub.user("dev", Role::Developer).await;
    hub.project("WEB", &[&admin, &client, &developer]).await;
    run_script(
        script,
        &hub,
        &[
            credentials("client", &client.username),
            credentials("admin", &admin.username),
            credentials("developer", &developer.username),
        ],
    )
    .await;
}

/// Editing in the workspace at both widths: a ticket's fields in place, comments edited and
/// deleted, the history's words, reading a ticket marks its notifications read.
async fn demo_page_edits_tickets_and_comments() {
    run_with_crew("edits.mjs").await;
}

/// The administration page at `/manage/` at both widths, light and dark: people added, found,
/// given another role, deactivated, given a new password and erased (behind a dialog); an
/// invitation's link, shown once and copied, accepted by a newcomer in another tab who lands in
/// the project; a sign-up asking to join a project by key, approved on the page, the project
/// shown after a reload; projects created and their members changed; an API key made (shown
/// On-call schedules on the administration page at both widths: made (one with nobody is
/// refused), who is on call now, an override added (one ending before it starts is refused)
/// and taken off, the schedule deleted behind a dialog.
async fn manage_page_runs_oncall_schedules_and_overrides() {
    run_with_crew("oncall-admin.mjs").await;
}

/// once) and revoked; a scheduled send cancelled. axe-core checks every new state.
async fn manage_page_runs_people_invitations_projects_keys_and_sends() {
    run_with_crew("manage.mjs").await;
}

/// Files in the workspace at both widths: a picture and its thumbnail, a name that is markup,
/// a refused type, a download, who may delete, a tombstone.
async fn demo_page_attaches_files() {
    run_with_crew("attachments.mjs").await;
}

async fn demo_page_says_when_sign_up_is_closed() {
    require_browser();
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.registration = tickethub::config::Registration::Closed;
    })
    .await;
    run_script("signup-closed.mjs", &hub, &[]).await;
}

/// One escalation policy: every assignment is escalated by email ten minutes later, unless read.
const ONE_STEP_POLICY: &str = r#"
[[escalation]]
name = "critical-assignments"
events = ["ticket_assigned"]
steps = [ { after = "10m", unless = "read", channels = ["email"] } ]
"#;

async fn operator_page_lists_escalation_steps_and_explains_who_was_left_out() {
    require_browser();
    let routing = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(routing.path(), ONE_STEP_POLICY).unwrap();
    let path = routing.path().to_owned();
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.routing = Some(path);
        c.escalation_poll_ms = 200;
    })
    .await;
    let admin = hub.user_with("ada", Role::Admin, true).await;
    let client = hub.user("carl", Role::Client).await;
    let developer = hub.user("dev", Role::Developer).await;
    let outsider = hub.user("olga", Role::Developer).await;
    let project = hub.project("WEB", &[&admin, &client, &developer]).await;
    let ticket = hub
        .post_as(
            &client,
            "/api/tickets/",
            serde_json::json!({"project": project.id.0, "title": "Checkout is <i>down</i>", "priority": "CRITICAL", "category": "BUG"}),
            201,
        )
        .await;
    let id = ticket["id"].as_i64().unwrap();
    hub.post_as(
        &admin,
        &format!("/api/tickets/{id}/open_ticket/"),
        serde_json::json!({}),
        200,
    )
    .await;
    // The developer is on call until about twelve hours from now.
    let now = chrono::Utc::now();
    hub.post_as(
        &admin,
        "/api/oncall/schedules/",
        serde_json::json!({"name": "primary", "time_zone": "UTC", "layers": [{
            "users": [developer.id.0, admin.id.0], "rotation": "daily",
            "handoff": (now + chrono::Duration::hours(12)).format("%H:%M").to_string(),
            "start": (now - chrono::Duration::minutes(5)).to_rfc3339()}]}),
        201,
    )
    .await;
    // The page first shows no step; then the admin assigns the developer.
    run_script_with(
        "escalations.mjs",
        &hub,
        &[
            credentials("admin", &admin.username),
            credentials("client", &client.username),
            credentials("developer", &developer.username),
            credentials("outsider", &outsider.username),
        ],
        Some(Cue {
            line: "cue: assign the ticket now",
            action: Box::pin(async {
                hub.post_as(
                    &admin,
                    &format!("/api/tickets/{id}/assign/"),
                    serde_json::json!({"developer_ids": [developer.id.0]}),
                    200,
                )
                .await;
            }),
        }),
    )
    .await;
    let pending = hub.get_as(&admin, "/api/admin/escalations", 200).await;
    assert_eq!(pending["count"], 1, "{pending}");
}

/// A browser's push subscription as `PushSubscription.toJSON()` gives it, with real-format
/// keys (a fresh P-256 public key and a 16-byte secret) and an endpoint on loopback, which the
/// hub takes with `push_allow_private`.
fn fake_subscription() -> serde_json::Value {
    use base64::Engine as _;
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let secret = loop {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        if let Ok(key) = p256::SecretKey::from_slice(&bytes) {
            break key;
        }
    };
    let mut auth = [0u8; 16];
    rand::fill(&mut auth);
    serde_json::json!({
        "endpoint": "http://127.0.0.1:9/push/browser-test",
        "expirationTime": null,
        "keys": {
            "p256dh": b64.encode(secret.public_key().to_encoded_point(false).as_bytes()),
            "auth": b64.encode(auth),
        },
    })
}

/// Browser notifications on the demo page: turning them on registers the browser's push
/// subscription as a device, the service worker at `/sw.js` shows a push as a notification
/// and opens its link on a click, and turning them off removes the device.
async fn demo_page_turns_browser_notifications_on_and_off() {
    require_browser();
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.channels.push.push_allow_private = true
    })
    .await;
    let res = hub.http.get(hub.url("/sw.js")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header("content-type").starts_with("text/javascript"));
    assert!(header("content-security-policy").contains("script-src 'self'"));
    let client = hub.user("carl", Role::Client).await;
    run_script(
        "push.mjs",
        &hub,
        &[
            credentials("client", &client.username),
            format!("subscription={}", fake_subscription()),
        ],
    )
    .await;
    let devices = hub.get_as(&client, "/api/devices/", 200).await;
    assert_eq!(devices, serde_json::json!([]), "turned off: no device left");
}

/// The operator page's delivery analytics: a hub given six `outage` notifications with an email
/// each (Carl's mails sent, Cora's refused by the mail server), two of Carl's read one and five
/// minutes after their commit, and one in-app `deploy`; all of it moved to the start of this
/// hour. `tests/browser/analytics.mjs` checks the table and the charts, the filters, a refused
/// range, and axe.
async fn operator_page_charts_delivery_analytics() {
    require_browser();
    let smtp = crate::fakes::Smtp::start().await;
    let url = smtp.url();
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        crate::delivery::quick(c);
        c.channels.email.smtp_url = Some(url);
    })
    .await;
    let admin = hub.user_with("ada", Role::Admin, true).await;
    let carl = hub.user("carl", Role::Client).await;
    let cora = hub.user("cora", Role::Client).await;
    hub.store
        .update_profile(
            cora.id,
            tickethub_actors::ports::ProfileChanges {
                addresses: vec![(
                    tickethub_actors::routing::Channel::Email,
                    Some("cora@invalid.test".into()),
                )],
                // Set as an admin would: verified.
                vouched: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    for i in 1..=3 {
        hub.send(
            &admin,
            &[&carl, &cora],
            serde_json::json!({"notification_type": "outage", "title": format!("Outage {i}"), "channels": ["email"]}),
        )
        .await;
    }
    hub.send(
        &admin,
        &[&carl],
        serde_json::json!({"notification_type": "deploy", "title": "Deployed"}),
    )
    .await;
    let outages = crate::analytics::ids_of(&hub, &carl, "outage").await;
    for id in &outages[..2] {
        hub.post_as(
            &carl,
            &format!("/api/notifications/{id}/mark_as_read/"),
            serde_json::json!({}),
            200,
        )
        .await;
    }
    crate::harness::eventually("the six mails are sent or refused", || async {
        crate::harness::db_number(
            &hub.db,
            "SELECT COUNT(*) FROM deliveries WHERE status IN ('SENT', 'FAILED')",
        )
        .await
            == 6
    })
    .await;
    let hour = tickethub_actors::analytics::Bucket::Hour.floor(chrono::Utc::now());
    crate::analytics::pin_history(&hub.db, hour, &[(outages[0], 60), (outages[1], 300)]).await;
    run_script(
        "analytics.mjs",
        &hub,
        &[credentials("admin", &admin.username)],
    )
    .await;
}

/// The address whose verification code `tests/browser/settings.mjs` types.
const NEW_EMAIL: &str = "carl.new@example.test";

/// The settings page at `/settings/`, at 1280×800 and 360×740: reached from the workspace's
/// header; the profile (name and time zone, kept after a reload); a new email address verified
/// with the code its mail carried (read here from the SMTP server, handed to the script in a
/// file when it asks); notification choices saved and read back over the API; quiet hours and
/// the digest; two browsers registered for pushes, turned off one by one; the password changed
/// (a wrong current one refused in words, the old token refused after); and logging out
/// everywhere, which ends on the login form with the page's token refused. axe-core checks
/// every new state.
async fn settings_page_changes_profile_addresses_choices_devices_and_sessions() {
    require_browser();
    let smtp = crate::fakes::Smtp::start().await;
    let url = smtp.url();
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.channels.email.smtp_url = Some(url);
        c.channels.push.push_allow_private = true;
    })
    .await;
    let admin = hub.user_with("ada", Role::Admin, true).await;
    let client = hub.user("carl", Role::Client).await;
    hub.project("WEB", &[&admin, &client]).await;
    let mut second = fake_subscription();
    second["endpoint"] = serde_json::json!("http://127.0.0.1:9/push/settings-second");
    let devices = serde_json::json!([fake_subscription(), second]);
    let dir = tempfile::tempdir().unwrap();
    let code_file = dir.path().join("code");
    let written = code_file.clone();
    let smtp = &smtp;
    run_script_with(
        "settings.mjs",
        &hub,
        &[
            credentials("client", &client.username),
            format!("devices={devices}"),
            format!("codefile={}", code_file.display()),
        ],
        Some(Cue {
            line: "cue: read the code sent to carl.new@example.test",
            action: Box::pin(async move {
                let mail =
                    crate::harness::eventually_some("the code reaches the new address", || async {
                        smtp.mails()
                            .into_iter()
                            .find(|m| m.to.iter().any(|to| to == NEW_EMAIL))
                    })
                    .await;
                let text = mail.text();
                let at = text.find("code is ").expect("a code") + "code is ".len();
                std::fs::write(&written, &text[at..at + 6]).unwrap();
            }),
        }),
    )
    .await;
    // The new password and the logout everywhere each ended every token the client held.
    let after = hub.store.user_by_id(client.id).await.unwrap().unwrap();
    assert_eq!(after.token_version, client.token_version + 2);
    assert_eq!(after.display_name, "Carl C.");
}

async fn api_reference_renders_without_the_internet() {
    require_browser();
    let hub = TestHub::start(&Backend::Sqlite).await;
    run_script("docs.mjs", &hub, &[]).await;
}

crate::trials! {
    both: [],
    tests: [
        pages_are_served_with_their_types,
        api_reference_renders_without_the_internet,
        demo_page_shows_a_ticket_lifecycle_in_real_time,
        operator_page_shows_the_live_supervision_tree,
        demo_page_shows_the_board_presence_and_typing,
        demo_page_works_as_a_ticket_workspace_on_desktop_and_phone,
        demo_page_says_when_sign_up_is_closed,
        demo_page_edits_tickets_and_comments,
        demo_page_attaches_files,
        settings_page_changes_profile_addresses_choices_devices_and_sessions,
        manage_page_runs_people_invitations_projects_keys_and_sends,
        manage_page_runs_oncall_schedules_and_overrides,
        demo_page_turns_browser_notifications_on_and_off,
        operator_page_lists_escalation_steps_and_explains_who_was_left_out,
        operator_page_charts_delivery_analytics,
    ],
    sync: [],
}
