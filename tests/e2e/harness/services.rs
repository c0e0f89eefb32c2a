//! Where the test services are: PostgreSQL and Redis from the environment, the local servers,
//! or the run's own ([`super::private`]); the programs and packages the suites need.

use super::*;

impl Backend {
    /// PostgreSQL at `TEST_DATABASE_URL`, or, when that is not set, at the local server's
    /// default address if it answers (`postgres://postgres@127.0.0.1:5432/postgres`), or a
    /// private server the run starts (see [`private`]). If none, the test is reported
    /// `ignored` with the reason, unless `TICKETHUB_REQUIRE_SERVICES=1`, where a missing
    /// service fails it.
    pub fn postgres() -> Backend {
        Backend::Postgres(service(
            "TEST_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
            5432,
            "PostgreSQL",
            private::postgres,
        ))
    }
}

/// The Redis URL for tests: `TEST_REDIS_URL`, or the local server's default address if it
/// answers (`redis://127.0.0.1:6379`), or a private server the run starts. If none, the test
/// is reported `ignored`, unless `TICKETHUB_REQUIRE_SERVICES=1`, where a missing service
/// fails it.
pub fn redis() -> String {
    service(
        "TEST_REDIS_URL",
        "redis://127.0.0.1:6379",
        6379,
        "Redis",
        private::redis,
    )
}

/// Stops the servers the run started for itself.
pub fn stop_private_services() {
    private::stop();
}

/// A test service's URL: from `var`, else `local` if something listens on its port, else a
/// private server from `start`; else the test is skipped (or fails, when services are
/// required).
fn service(
    var: &str,
    local: &str,
    port: u16,
    what: &str,
    start: fn() -> Result<String, String>,
) -> String {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => return url,
        _ => {}
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    if std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)).is_ok() {
        return local.to_owned();
    }
    let why = match start() {
        Ok(url) => return url,
        Err(why) => why,
    };
    if services_required() {
        panic!("{var} is not set, nothing answers on {addr}, no private {what} could start ({why}), and TICKETHUB_REQUIRE_SERVICES=1");
    }
    skip(format!(
        "no {what}: set {var}, start one on {addr}, or install its package ({why})"
    ))
}

/// A program a test needs is not installed: the test is skipped, or fails when services are
/// required.
pub fn missing(program: &str, error: &std::io::Error) -> ! {
    if services_required() {
        panic!("cannot run {program} ({error}), and TICKETHUB_REQUIRE_SERVICES=1");
    }
    skip(format!("{program} is not installed ({error})"))
}

/// Whether a missing service fails the tests that need it (`TICKETHUB_REQUIRE_SERVICES=1`,
/// as CI sets it) rather than skipping them.
pub fn services_required() -> bool {
    std::env::var("TICKETHUB_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// Fails the test unless `node` runs (Node ≥ 20 is on every machine the suite runs on).
pub fn require_node() {
    let ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "node is missing: install Node.js 20 or later");
}

/// Installs the npm packages the browser and seed tests, the SMTP peer and the push service use
/// (`npm ci`), once, if they are missing.
pub fn npm_packages() {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if [
        "playwright-core",
        "smtp-server",
        "axe-core",
        "web-push-testing",
    ]
    .iter()
    .all(|p| {
        root.join("node_modules")
            .join(p)
            .join("package.json")
            .exists()
    }) {
        return;
    }
    let out = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(root)
        .output()
        .expect("npm runs");
    assert!(
        out.status.success(),
        "`npm ci` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
