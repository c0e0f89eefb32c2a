use super::*;

/// Unusable values of the settings above stop the hub with exit status 64 and one line
/// naming the setting, whether they come from a flag, the environment or the file.
pub(super) fn bad_values_of_these_settings_exit_64_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let bad_value = file("bad-value.toml", "shutdown-timeout = \"soon\"\n");
    let unknown_key = file("unknown-key.toml", "shutdown-timeot = 3\n");
    let not_toml = file("not-toml.toml", "registration = [\n");
    let far_step = file(
        "far-step.toml",
        "[[escalation]]\nevents = [\"ticket_assigned\"]\nsteps = [ { after = \"300000y\", channels = [\"email\"] } ]\n",
    );
    let far_wait = file(
        "far-wait.toml",
        "[ticket_assigned]\nrecipients = [\"assignees\"]\nchannels = [\"push\"]\npush = { unless_seen_within = \"300000y\" }\n",
    );
    let cases: &[Case] = &[
        (
            &["serve", "--shutdown-timeout", "soon"],
            &[],
            "--shutdown-timeout",
        ),
        (
            &["serve"],
            &[("TICKETHUB_SHUTDOWN_TIMEOUT", "-1")],
            "--shutdown-timeout",
        ),
        (
            &["serve", "--sqlite-synchronous", "sometimes"],
            &[],
            "--sqlite-synchronous",
        ),
        (
            &["serve"],
            &[("TICKETHUB_SQLITE_SYNCHRONOUS", "off")],
            "--sqlite-synchronous",
        ),
        (
            &["serve", "--sqlite-page-size", "3000"],
            &[],
            "--sqlite-page-size",
        ),
        (
            &["serve"],
            &[("TICKETHUB_SQLITE_PAGE_SIZE", "131072")],
            "--sqlite-page-size",
        ),
        (
            &["serve", "--ws-handshake-concurrency", "0"],
            &[],
            "--ws-handshake-concurrency",
        ),
        (
            &["serve", "--ws-handshake-concurrency", "many"],
            &[],
            "--ws-handshake-concurrency",
        ),
        (
            &["serve", "--bus-outage-poll-ms", "0"],
            &[],
            "--bus-outage-poll-ms",
        ),
        (
            &["serve"],
            &[("TICKETHUB_BUS_OUTAGE_POLL_MS", "584542046091000000")],
            "--bus-outage-poll-ms",
        ),
        (&["serve", "--registration", "maybe"], &[], "--registration"),
        (
            &["--config", &bad_value, "serve"],
            &[],
            "--shutdown-timeout",
        ),
        (&["--config", &unknown_key, "serve"], &[], "shutdown-timeot"),
        (&["serve"], &[("TICKETHUB_CONFIG", &not_toml)], "--config"),
        // Spans and sizes past anything a setting needs, which would overflow a time or an
        // allocation: refused, not a panic.
        (&["serve", "--retention", "300000y"], &[], "--retention"),
        (
            &["serve"],
            &[("TICKETHUB_RETENTION_INTERVAL", "584542046091y")],
            "--retention-interval",
        ),
        (
            &["serve", "--schedule-max-ahead", "300000y"],
            &[],
            "--schedule-max-ahead",
        ),
        (
            &["serve", "--escalation-lease", "18446744073709551615"],
            &[],
            "--escalation-lease",
        ),
        (
            &["serve", "--sqlite-wal-limit-mb", "18446744073709551615"],
            &[],
            "--sqlite-wal-limit-mb",
        ),
        (
            &["serve", "--max-connections", "18446744073709551615"],
            &[],
            "--max-connections",
        ),
        (&["serve", "--routing", &far_step], &[], "after"),
        (
            &["serve", "--routing", &far_wait],
            &[],
            "unless_seen_within",
        ),
    ];
    for (args, env, setting) in cases {
        let mut child = crate::harness::tickethub_command()
            .current_dir(dir.path())
            .args(*args)
            .args(["--bind", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A value taken for a usable one would start the hub: stop it rather than wait.
        let deadline = Instant::now() + patience();
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{args:?} {env:?}: the hub started");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let case = format!("{args:?} {env:?}: {stderr}");
        assert_eq!(out.status.code(), Some(64), "{case}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{case}");
        assert!(stderr.contains(setting), "{case}");
        assert!(!stderr.contains("panicked"), "{case}");
    }
}
