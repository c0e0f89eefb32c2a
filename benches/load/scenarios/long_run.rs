use super::*;

/// Options of `soak`.
#[derive(Args, Debug)]
pub struct SoakArgs {
    /// Minutes of load; sizes are sampled at the end of each.
    #[arg(long, default_value_t = 10)]
    minutes: u32,
    /// Seconds in a "minute" (shorter for a smoke run).
    #[arg(long, default_value_t = 60.0)]
    step_seconds: f64,
    /// Connected users the notifications go to, at random.
    #[arg(long, default_value_t = 1_000)]
    clients: usize,
    /// Notifications per second, one per send call.
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    /// Send calls in flight at most.
    #[arg(long, default_value_t = 256)]
    inflight: usize,
    /// Retention given to the hub (read, deleted and delivered unread notifications, and the
    /// history tables, older than this go).
    #[arg(long, default_value = "2m")]
    retention: String,
    /// How often the hub purges.
    #[arg(long, default_value = "30s")]
    retention_interval: String,
    /// Seconds to wait for stragglers after each minute before they count as lost.
    #[arg(long, default_value_t = 10)]
    drain: u64,
}

/// The sizes `soak` samples.
pub(super) fn soak_sizes(target: &Target) -> (f64, f64, f64) {
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let file = |name: &str| {
        target
            .child
            .as_ref()
            .and_then(|c| c.dir())
            .and_then(|d| std::fs::metadata(d.join(name)).ok())
            .map_or(0, |m| m.len())
    };
    let rss = target.pid.map_or(0, crate::child::rss_kib) as f64 / 1024.0;
    (mib(file("load.db")), mib(file("load.db-wal")), rss)
}

/// The hub's `/metrics`, as text (empty when it does not answer).
pub(super) async fn metrics_text(target: &Target) -> String {
    async {
        target
            .http
            .get(format!("{}/metrics", target.base))
            .send()
            .await?
            .text()
            .await
    }
    .await
    .unwrap_or_default()
}

/// A value of `/metrics`, summed over its labels (0 when absent).
pub(super) fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// PostgreSQL's size of the hub's database, and of the server's log (`pg_wal`), in MiB.
pub(super) async fn pg_sizes_mib(url: &str) -> (f64, f64) {
    use sqlx::Connection;
    let Ok(mut conn) = sqlx::PgConnection::connect(url).await else {
        return (0.0, 0.0);
    };
    let size: Result<(i64, i64), _> = sqlx::query_as(
        "SELECT pg_database_size(current_database()), \
         (SELECT coalesce(sum(size), 0)::bigint FROM pg_ls_waldir())",
    )
    .fetch_one(&mut conn)
    .await;
    size.map_or((0.0, 0.0), |(db, wal)| {
        (
            db as f64 / (1024.0 * 1024.0),
            wal as f64 / (1024.0 * 1024.0),
        )
    })
}

/// The database URL of a hub child on PostgreSQL.
pub(super) fn pg_url(target: &Target) -> Option<String> {
    target
        .child
        .as_ref()
        .and_then(|c| c.ready["database_url"].as_str())
        .filter(|u| u.starts_with("postgres"))
        .map(str::to_owned)
}

/// Bytes written to the database's log so far: the server's log position on PostgreSQL (every
/// database of the server counts), the hub's own count of the frames its commits wrote on
/// SQLite (`tickethub_sqlite_wal_written_bytes_total`). `None` for the bare stack.
pub(super) async fn log_written_bytes(target: &Target) -> Option<f64> {
    use sqlx::Connection;
    let child = target.child.as_ref()?;
    if !child.ready["database_url"].is_string() {
        return None;
    }
    match pg_url(target) {
        Some(url) => {
            let mut conn = sqlx::PgConnection::connect(&url).await.ok()?;
            let (lsn,): (f64,) =
                sqlx::query_as("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::float8")
                    .fetch_one(&mut conn)
                    .await
                    .ok()?;
            Some(lsn)
        }
        None => Some(metric_sum(
            &metrics_text(target).await,
            "tickethub_sqlite_wal_written_bytes_total",
        )),
    }
}

/// A steady load for minutes with retention set short: the database's files and the hub's
/// memory must level off, not grow with the run.
pub async fn soak(a: SoakArgs, common: &Common) -> bool {
    crate::child::add_hub_args([
        format!("--retention={}", a.retention),
        format!("--retention-unread={}", a.retention),
        format!("--retention-interval={}", a.retention_interval),
    ]);
    let mut report = Report::new(
        "soak",
        json!({"clients": a.clients, "rate": a.rate, "minutes": a.minutes,
               "step_seconds": a.step_seconds,
               "users_per_send_call": 1, "retention": a.retention,
               "retention_interval": a.retention_interval, "database": db_label(common)}),
        "latency at a fixed rate, scheduled send to frame",
    );
    let Some((target, mut pool, connected)) = start_connected(Kind::Hub, common, a.clients).await
    else {
        return false;
    };
    let pg_url = pg_url(&target);
    let ids: Vec<i64> = connected.last_seq.keys().copied().collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut highs = connected.last_seq.clone();
    let mut run = Run::new("hub");
    let mut minutes = Vec::new();
    let mut latencies = Vec::new();
    let mut minute_latencies: Vec<Vec<f64>> = Vec::new();
    let mut wal_peak: f64 = 0.0;
    // The log is sampled every half second: a peak between two minutes' ends would hide.
    let wal_file = target
        .child
        .as_ref()
        .and_then(|c| c.dir())
        .map(|d| d.join("load.db-wal"));
    let wal_max = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = wal_file.map(|path| {
        let wal_max = wal_max.clone();
        tokio::spawn(async move {
            loop {
                let size = std::fs::metadata(&path).map_or(0, |m| m.len());
                wal_max.fetch_max(size, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    });
    println!(
        "  minute  sent/s   p50 ms   p99 ms   max ms   db MiB  wal MiB  (peak)  rss MiB  alloc MiB  log KiB/n"
    );
    let mut log_before = log_written_bytes(&target).await;
    for minute in 1..=a.minutes {
        let calls = (a.rate * a.step_seconds).ceil().max(1.0) as usize;
        let (step, tracker) = paced(
            &target,
            &mut pool,
            &connected.last_seq,
            &highs,
            &format!("m{minute}"),
            calls,
            a.rate,
            1,
            |_| rng.pick(&ids, 1),
            None,
            a.inflight,
            Duration::from_secs(a.drain),
        )
        .await;
        highs = tracker.highs();
        let (db, wal, rss) = soak_sizes(&target);
        let (db, wal) = match &pg_url {
            Some(url) => pg_sizes_mib(url).await,
            None => (db, wal),
        };
        let log_now = log_written_bytes(&target).await;
        let log_kib_per_notification = match (log_before, log_now) {
            (Some(b), Some(n)) if step.calls_ok > 0 => (n - b) / 1024.0 / step.calls_ok as f64,
            _ => 0.0,
        };
        log_before = log_now;
        let peak = (wal_max.swap(0, std::sync::atomic::Ordering::Relaxed) as f64
            / (1024.0 * 1024.0))
            .max(wal);
        wal_peak = wal_peak.max(peak);
        let allocated = metric_sum(
            &metrics_text(&target).await,
            "tickethub_memory_allocated_bytes",
        ) / (1024.0 * 1024.0);
        println!(
            "  {minute:>6} {:>7.0} {:>8.2} {:>8.2} {:>8.2} {db:>8.1} {wal:>8.1} {peak:>7.1} {rss:>8.1} {allocated:>9.1} {log_kib_per_notification:>10.2}",
            step.achieved,
            step.p(0.5),
            step.p(0.99),
            step.p(1.0)
        );
        run.lost += step.lost;
        run.duplicated += step.duplicated;
        run.out_of_order += step.out_of_order;
        run.unexpected += step.unexpected;
        minutes.push(json!({
            "minute": minute, "achieved_per_second": step.achieved,
            "p50_ms": step.p(0.5), "p99_ms": step.p(0.99), "max_ms": step.p(1.0),
            "db_mib": db, "wal_mib": wal, "wal_peak_mib": peak, "rss_mib": rss,
            "allocated_mib": allocated, "log_kib_per_notification": log_kib_per_notification,
        }));
        latencies.extend(step.latencies_ms.iter().copied());
        minute_latencies.push(step.latencies_ms);
    }
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    // What the hub says of its log restarts and purge batches.
    {
        let text = metrics_text(&target).await;
        let value = |name: &str| metric_sum(&text, name);
        for (histogram, label) in [
            (
                "tickethub_sqlite_wal_restart_hold_seconds",
                "wal_restart_hold",
            ),
            ("tickethub_sqlite_wal_restart_seconds", "wal_restart"),
            ("tickethub_purge_batch_seconds", "purge_batch"),
        ] {
            let count = value(&format!("{histogram}_count"));
            if count > 0.0 {
                let mean_ms = value(&format!("{histogram}_sum")) / count * 1000.0;
                run.metric(&format!("{label}_count"), count, "");
                run.metric(&format!("{label}_mean_ms"), mean_ms, "ms");
            }
        }
        run.metric("purged_rows", value("tickethub_purged_rows_total"), "");
    }
    let series = |key: &str| -> Vec<f64> {
        minutes
            .iter()
            .map(|m| m[key].as_f64().unwrap_or(0.0))
            .collect()
    };
    // Levelled off: the last minute is no more than a fifth above the middle one (the first
    // minutes fill the retention window; after it, purges keep pace with the load).
    let level = |values: &[f64]| -> f64 {
        let mid = values[values.len() / 2].max(1e-9);
        values[values.len() - 1] / mid
    };
    let (db, wal, rss) = (series("db_mib"), series("wal_mib"), series("rss_mib"));
    let allocated = series("allocated_mib");
    run.metric("db_last_over_middle", level(&db), "x");
    run.metric("rss_last_over_middle", level(&rss), "x");
    run.metric("allocated_last_over_middle", level(&allocated), "x");
    // An hour's check: the last ten minutes' mean within 2 % of the ten before, and the last
    // ten minutes' p99 within 10 % of the first minute's.
    if minutes.len() >= 20 {
        let n = minutes.len();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        for (name, values) in [("rss", &rss), ("db", &db), ("wal", &wal)] {
            let ratio = mean(&values[n - 10..]) / mean(&values[n - 20..n - 10]).max(1e-9);
            run.metric(&format!("{name}_last10_over_previous10"), ratio, "x");
            if !(0.98..=1.02).contains(&ratio) {
                report.notes.push(format!(
                    "{name}: the last ten minutes' mean is {ratio:.3}× the ten before (goal within 2 %)"
                ));
            }
        }
        let first = percentile_of(&minute_latencies[0], 0.99);
        let last: Vec<f64> = minute_latencies[n - 10..].concat();
        let ratio = percentile_of(&last, 0.99) / first.max(1e-9);
        run.metric("p99_last10_over_first_minute", ratio, "x");
        if ratio > 1.10 {
            report.notes.push(format!(
                "p99: the last ten minutes' is {ratio:.2}× the first minute's (goal ≤ 1.10×)"
            ));
        }
    }
    let log_per_notification = series("log_kib_per_notification");
    run.metric(
        "log_kib_per_notification",
        log_per_notification.iter().sum::<f64>() / log_per_notification.len().max(1) as f64,
        "KiB",
    );
    let curves = crate::curves::curves_svg(
        &format!(
            "soak on {}: {} notifications/s for {} minutes, retention {}",
            db_label(common),
            a.rate,
            a.minutes,
            a.retention
        ),
        &[
            crate::curves::Panel {
                title: "p99 latency (ms)",
                values: &series("p99_ms"),
            },
            crate::curves::Panel {
                title: "hub RSS (MiB)",
                values: &rss,
            },
            crate::curves::Panel {
                title: "database (MiB)",
                values: &db,
            },
            crate::curves::Panel {
                title: if pg_url.is_some() {
                    "server log, pg_wal (MiB)"
                } else {
                    "log, -wal file (MiB)"
                },
                values: &wal,
            },
            crate::curves::Panel {
                title: "log written per notification (KiB)",
                values: &log_per_notification,
            },
        ],
    );
    let curves_path = common.out.join("soak-curves.svg");
    std::fs::create_dir_all(&common.out).expect("create the output folder");
    std::fs::write(&curves_path, curves).expect("write the curves");
    println!("  wrote {}", curves_path.display());
    run.metric(
        "allocated_last_mib",
        *allocated.last().unwrap_or(&0.0),
        "MiB",
    );
    run.metric("wal_peak_mib", wal_peak, "MiB");
    run.metric("db_last_mib", *db.last().unwrap_or(&0.0), "MiB");
    run.metric("wal_last_mib", *wal.last().unwrap_or(&0.0), "MiB");
    run.metric("rss_last_mib", *rss.last().unwrap_or(&0.0), "MiB");
    run.metric("p99_ms", percentile_of(&latencies, 0.99), "ms");
    run.metric("max_ms", percentile_of(&latencies, 1.0), "ms");
    run.latencies_ms = latencies;
    run.extra = json!({ "minutes": minutes });
    // SQLite's own log, which the hub restarts; PostgreSQL's is the server's, sized by it.
    let wal_ok = pg_url.is_some() || wal_peak <= 256.0;
    if !wal_ok {
        report.notes.push(format!(
            "the WAL reached {wal_peak:.0} MiB, past its 256 MiB bound"
        ));
    }
    report.runs.push(run);
    pool.close().await;
    Arc::try_unwrap(target)
        .ok()
        .expect("no send in flight")
        .stop()
        .await;
    report.notes.push("one notification per send call".into());
    report.finish(&common.out) && wal_ok
}
