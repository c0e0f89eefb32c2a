//! The official JavaScript client (`clients/js`): its own `node --test` suite, run against the
//! hub binary this build made.
//!
//! The suite starts hubs of its own (`clients/js/test/hub.mjs`) from `TICKETHUB_BIN`, and takes
//! its waits from `TICKETHUB_TEST_PATIENCE` like this binary does. Without node the test fails,
//! as the browser tests do.

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncReadExt;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_tickethub");

/// The suite's test files (`clients/js/test/*.test.mjs`), sorted.
fn test_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.ends_with(".test.mjs").then(|| format!("test/{name}"))
        })
        .collect();
    files.sort();
    files
}

async fn the_js_client_passes_its_own_tests() {
    crate::harness::require_node();
    let package = Path::new(ROOT).join("clients/js");
    let files = test_files(&package.join("test"));
    assert!(!files.is_empty(), "no test files in clients/js/test");
    let mut command = tokio::process::Command::new("node");
    command
        .args(["--experimental-websocket", "--test", "--test-concurrency=1"])
        .args(&files)
        .current_dir(&package)
        .env("TICKETHUB_BIN", BIN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // The suite's own waits take the same factor as ours.
    command.env("TICKETHUB_TEST_PATIENCE", crate::harness::patience_factor());
    let mut child = command.spawn().expect("node starts");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text).await;
        text
    });
    let err = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    // Each of the suite's tests waits at most a patience for any one event, and there are a
    // few dozen events in all: twenty patiences bound the whole run without racing it.
    let limit = crate::harness::patience() * 20;
    let status = tokio::time::timeout(limit, child.wait()).await;
    let status = match status {
        Ok(status) => status.expect("node runs"),
        Err(_) => {
            let _ = child.kill().await;
            let (out, err) = (out.await.unwrap_or_default(), err.await.unwrap_or_default());
            panic!("the JS client's tests did not finish in {limit:?}:\n--- stdout\n{out}\n--- stderr\n{err}");
        }
    };
    let (out, err) = (out.await.unwrap_or_default(), err.await.unwrap_or_default());
    assert!(
        status.success(),
        "the JS client's tests failed ({status}):\n--- stdout\n{out}\n--- stderr\n{err}\n--- failed\n{}",
        failures(&out)
    );
    // node --test reports how many ran; none at all would be no test, and a skipped one is
    // not a pass.
    assert!(
        out.lines()
            .any(|l| l.starts_with("# pass ") && l != "# pass 0"),
        "no test of the JS client passed:\n{out}"
    );
    for quiet in ["# skipped 0", "# todo 0"] {
        assert!(
            out.lines().any(|l| l == quiet),
            "the JS client's tests skipped some (no {quiet:?}):\n{out}"
        );
    }
    println!("{out}");
}

/// The report of each failed test in node's TAP output (from its `not ok` line to the end of
/// its details), repeated after the whole output so that a truncated log still shows why.
fn failures(tap: &str) -> String {
    let mut picked = String::new();
    let mut inside = false;
    for line in tap.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("not ok ") {
            inside = true;
        } else if inside && (trimmed.starts_with("ok ") || trimmed.starts_with("# Subtest:")) {
            inside = false;
        }
        if inside {
            picked.push_str(line);
            picked.push('\n');
        }
    }
    picked
}

fn a_failed_js_test_is_repeated_from_the_tap_output() {
    let tap = "# Subtest: first\nok 1 - first\n  ---\n  duration_ms: 1\n  ...\n\
               # Subtest: second\nnot ok 2 - second\n  ---\n  error: 'timed out'\n  ...\n\
               # Subtest: third\nok 3 - third\n1..3\n# pass 2\n";
    assert_eq!(
        failures(tap),
        "not ok 2 - second\n  ---\n  error: 'timed out'\n  ...\n"
    );
    assert_eq!(failures("ok 1 - first\n# pass 1\n"), "");
}

crate::trials! {
    both: [],
    tests: [the_js_client_passes_its_own_tests],
    sync: [a_failed_js_test_is_repeated_from_the_tap_output],
}
