//! Private PostgreSQL and Redis servers for a test run that was given none: started once, on
//! free ports, in temporary folders, the first time a test needs one, and stopped when the run
//! ends, or when the process dies (each runs under a shell that stops it once the pipe from
//! this process closes). They need the servers' packages (Debian: `postgresql`,
//! `redis-server`), not running services.

use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A server of the run's own.
struct Server {
    child: Child,
    dir: PathBuf,
}

/// Every private server started, to stop at the end of the run.
static STARTED: Mutex<Vec<Server>> = Mutex::new(Vec::new());

/// The private PostgreSQL's admin URL, once started; `Err` with why it could not be.
pub fn postgres() -> Result<String, String> {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    URL.get_or_init(start_postgres).clone()
}

/// The private Redis's URL, once started; `Err` with why it could not be.
pub fn redis() -> Result<String, String> {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    URL.get_or_init(start_redis).clone()
}

/// Stops the private servers and removes their folders.
pub fn stop() {
    let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
    for mut server in started.drain(..) {
        // Its shell stops it once its input ends.
        drop(server.child.stdin.take());
        let _ = server.child.wait();
        let _ = std::fs::remove_dir_all(&server.dir);
    }
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tickethub-test-{what}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Where PostgreSQL's programs are: on the `PATH`, else Debian's newest
/// `/usr/lib/postgresql/<version>/bin`.
fn postgres_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| dir.join("initdb").is_file()));
    on_path.or_else(|| {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
            .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").is_file())
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    })
}

/// The user PostgreSQL runs as: this one, or, for root (whom PostgreSQL refuses), the
/// `postgres` account the package made.
fn postgres_user() -> Result<Option<(u32, u32)>, String> {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == "postgres")
        .and_then(|f| Some(Some((f[2].parse().ok()?, f[3].parse().ok()?))))
        .ok_or_else(|| "running as root, and there is no `postgres` account".to_owned())
}

/// Runs `program` with `args` (as `user`, if given) under a shell that stops it with `signal`
/// once its input, a pipe from this process, closes: at [`stop`], or when this process dies
/// however it dies.
fn spawn_for_the_run(
    program: &Path,
    args: &[std::ffi::OsString],
    user: Option<(u32, u32)>,
    signal: &str,
) -> std::io::Result<Child> {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            r#""$@" & pid=$!; cat >/dev/null; kill -{signal} "$pid"; wait "$pid""#
        ))
        .arg("sh")
        .arg(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command.spawn()
}

/// Runs `program` (as `user`, if given) to its end.
fn run(program: &Path, user: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(program);
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command
}

/// Waits until something accepts connections on `port`, or `child` has exited.
fn wait_listening(child: &mut Child, port: u16, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + crate::harness::patience();
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited: {status}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{what} did not listen on {port} in time"))
}

fn start_postgres() -> Result<String, String> {
    let bin = postgres_bin().ok_or("PostgreSQL is not installed (no initdb)")?;
    let user = postgres_user()?;
    let dir = temp_dir("postgres");
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }
    let data = dir.join("data");
    let made = run(&bin.join("initdb"), user)
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !made.status.success() {
        return Err(format!("initdb: {}", String::from_utf8_lossy(&made.stderr)));
    }
    let port = crate::nodes::free_port();
    let args: Vec<std::ffi::OsString> = [
        "-D".into(),
        data.into_os_string(),
        "-p".into(),
        port.to_string().into(),
        "-k".into(),
        dir.clone().into_os_string(),
        "-c".into(),
        "listen_addresses=127.0.0.1".into(),
        "-c".into(),
        "max_connections=200".into(),
        "-c".into(),
        "fsync=off".into(),
    ]
    .into();
    let mut child = // SIGINT: its fast shutdown.
        spawn_for_the_run(&bin.join("postgres"), &args, user, "INT")
        .map_err(|e| format!("postgres: {e}"))?;
    let listening = wait_listening(&mut child, port, "postgres");
    STARTED.lock().unwrap().push(Server { child, dir });
    listening?;
    // Listening is not yet accepting queries: ask until it answers.
    let ready = bin.join("pg_isready");
    let deadline = Instant::now() + crate::harness::patience();
    while Command::new(&ready)
        .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
        .status()
        .is_ok_and(|s| !s.success())
    {
        if Instant::now() > deadline {
            return Err("postgres did not accept connections in time".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("note: the tests run on a private PostgreSQL on port {port}");
    Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
}

/// `program` as found on the `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn start_redis() -> Result<String, String> {
    let program = on_path("redis-server").ok_or("Redis is not installed (no redis-server)")?;
    let dir = temp_dir("redis");
    let port = crate::nodes::free_port();
    let args: Vec<std::ffi::OsString> = [
        "--port".into(),
        port.to_string().into(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--save".into(),
        "".into(),
        "--appendonly".into(),
        "no".into(),
        "--dir".into(),
        dir.clone().into_os_string(),
    ]
    .into();
    let mut child = spawn_for_the_run(&program, &args, None, "TERM")
        .map_err(|e| format!("redis-server: {e}"))?;
    let listening = wait_listening(&mut child, port, "redis-server");
    STARTED.lock().unwrap().push(Server { child, dir });
    listening?;
    eprintln!("note: the tests run on a private Redis on port {port}");
    Ok(format!("redis://127.0.0.1:{port}"))
}
