use super::*;

// ---------------------------------------------------------------------------------------------

/// Options of `slow`.
#[derive(Args, Debug)]
pub struct SlowArgs {
    /// Users, one socket each; a share of them stall.
    #[arg(long, default_value_t = 1_000)]
    clients: usize,
    /// The share of sockets that stop reading.
    #[arg(long, default_value_t = 0.1)]
    stalled_share: f64,
    /// Send calls per second, each to every user (stalled ones too).
    #[arg(long, default_value_t = 4.0)]
    rate: f64,
    /// Seconds of sending per phase.
    #[arg(long, default_value_t = 15.0)]
    seconds: f64,
    /// Bytes of padding in each notification, so that stalled sockets fill up.
    #[arg(long, default_value_t = 16_384)]
    payload_bytes: usize,
    /// The run fails if p99 with stalled sockets is above this many times p99 without…
    #[arg(long, default_value_t = 2.0)]
    max_growth: f64,
    /// …and above this bound, in ms.
    #[arg(long, default_value_t = 50.0)]
    p99_bound_ms: f64,
}

/// A share of sockets stop reading (raw TCP, small receive buffer); the others' latency is
/// measured without them and with them.
pub async fn slow(a: SlowArgs, common: &Common) -> bool {
    let stalled_n = ((a.clients as f64) * a.stalled_share).round() as usize;
    let normal_n = a.clients - stalled_n;
    let mut report = Report::new(
        "slow",
        json!({"clients": a.clients, "stalled": stalled_n, "calls_per_second": a.rate,
               "notifications_per_second": a.rate * a.clients as f64, "seconds": a.seconds,
               "payload_bytes": a.payload_bytes, "database": db_label(common)}),
        "latency of the reading sockets, scheduled send to frame",
    );
    let payload: Option<Arc<str>> =
        (a.payload_bytes > 0).then(|| Arc::from("x".repeat(a.payload_bytes)));
    for kind in common.kinds(true) {
        let seed = Seed {
            clients: a.clients,
            admins: 1,
            ..Default::default()
        };
        let Some(target) = start(kind, common, &seed).await else {
            return false;
        };
        let target = Arc::new(target);
        let normal = target.clients[..normal_n].to_vec();
        let stalled = target.clients[normal_n..a.clients].to_vec();
        let all: Vec<i64> = target.clients[..a.clients].iter().map(|p| p.id).collect();
        let (mut pool, connected) = connect(&target, &normal, common).await;
        let calls = (a.rate * a.seconds).ceil() as usize;
        let (without, tracker) = paced(
            &target,
            &mut pool,
            &connected.last_seq,
            &connected.last_seq,
            "quiet",
            calls,
            a.rate,
            all.len(),
            |_| all.clone(),
            payload.clone(),
            64,
            Duration::from_secs(10),
        )
        .await;
        let paths: Vec<(i64, String)> = stalled.iter().map(|p| (p.id, target.ws_path(p))).collect();
        let opened = pool.stall(&paths).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (with, _) = paced(
            &target,
            &mut pool,
            &connected.last_seq,
            &tracker.highs(),
            "stalled",
            calls,
            a.rate,
            all.len(),
            |_| all.clone(),
            payload.clone(),
            64,
            Duration::from_secs(10),
        )
        .await;
        let cut_off = pool.stalled_cut_off().await;
        let mut run = Run::new(kind.label());
        for s in [&without, &with] {
            run.lost += s.lost;
            run.duplicated += s.duplicated;
            run.out_of_order += s.out_of_order;
            run.unexpected += s.unexpected;
        }
        run.metric("reading_sockets", normal_n as f64, "");
        run.metric("stalled_sockets", opened as f64, "");
        run.metric("p50_without_ms", without.p(0.5), "ms");
        run.metric("p99_without_ms", without.p(0.99), "ms");
        run.metric("p50_with_ms", with.p(0.5), "ms");
        run.metric("p99_with_ms", with.p(0.99), "ms");
        run.metric("max_with_ms", with.p(1.0), "ms");
        run.metric("p99_growth", with.p(0.99) / without.p(0.99).max(1e-9), "×");
        run.metric("stalled_cut_off", cut_off as f64, "");
        run.metric(
            "delivered_per_second",
            with.achieved * normal_n as f64 / a.clients as f64,
            "/s",
        );
        if let Some(c) = with.server_cpu_us {
            run.metric("server_cpu_us_per_delivery_with", c, "us");
        }
        run.metric(
            "socket_reconnects",
            (without.reconnects + with.reconnects) as f64,
            "",
        );
        if with.p(0.99) > a.max_growth * without.p(0.99) && with.p(0.99) > a.p99_bound_ms {
            run.failures.push(format!(
                "p99 moved from {:.1} ms to {:.1} ms with stalled sockets",
                without.p(0.99),
                with.p(0.99)
            ));
        }
        if without.calls_failed + with.calls_failed > 0 {
            run.failures.push(format!(
                "{} send calls failed",
                without.calls_failed + with.calls_failed
            ));
        }
        report.series.push((
            format!("{} without stalled", kind.label()),
            without.latencies_ms.clone(),
        ));
        report.series.push((
            format!("{} with {stalled_n} stalled", kind.label()),
            with.latencies_ms.clone(),
        ));
        run.latencies_ms = with.latencies_ms.clone();
        run.extra = json!({"without": without.to_json(), "with": with.to_json()});
        report.runs.push(run);
        pool.close().await;
        Arc::try_unwrap(target)
            .ok()
            .expect("no send in flight")
            .stop()
            .await;
    }
    report.finish(&common.out)
}
