use super::*;

// ---------------------------------------------------------------------------------------------

/// Options of `lifecycle`.
#[derive(Args, Debug)]
pub struct LifecycleArgs {
    /// Tickets walked through create → open → assign → start → finish → approve.
    #[arg(long, default_value_t = 200)]
    tickets: usize,
    /// Tickets in flight at once.
    #[arg(long = "in-flight", default_value_t = 32)]
    in_flight: usize,
    /// Clients filing tickets.
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Admins opening and assigning them (the embedded hub only; on a target, the admin).
    #[arg(long, default_value_t = 3)]
    admins: usize,
    /// Developers doing the work.
    #[arg(long, default_value_t = 10)]
    developers: usize,
    /// Seconds to wait for the last notifications.
    #[arg(long, default_value_t = 15)]
    drain: u64,
}

/// One event of a ticket and who must hear about it.
pub(super) struct Event {
    key: String,
    at_us: i64,
    recipients: Vec<i64>,
}

/// A walked ticket's events and REST latencies (of the steps that succeeded), and why it
/// stopped early, if it did.
pub(super) type Walked = (Vec<Event>, Vec<f64>, Option<String>);

/// Walks one ticket through its life; returns the events of the steps that succeeded, their
/// REST latencies, and the error that stopped it early, if any.
pub(super) async fn walk(
    target: &Target,
    t: usize,
    client: &Principal,
    admin: &Principal,
    devs: &[Principal],
) -> Walked {
    let mut events = Vec::new();
    let mut rest_ms = Vec::new();
    let error = walk_steps(target, t, client, admin, devs, &mut events, &mut rest_ms)
        .await
        .err();
    (events, rest_ms, error)
}

pub(super) async fn walk_steps(
    target: &Target,
    t: usize,
    client: &Principal,
    admin: &Principal,
    devs: &[Principal],
    events: &mut Vec<Event>,
    rest_ms: &mut Vec<f64>,
) -> Result<(), String> {
    use reqwest::Method;
    let admins = &target.all_admin_ids;
    let dev_ids: Vec<i64> = devs.iter().map(|d| d.id).collect();
    // Who hears: the routing table of the product contract, never the actor.
    let without = |ids: Vec<i64>, actor: i64| -> Vec<i64> {
        let mut out: Vec<i64> = Vec::new();
        for id in ids {
            if id != actor && !out.contains(&id) {
                out.push(id);
            }
        }
        out
    };
    let t0 = wall_us();
    let started = Instant::now();
    let ticket = target
        .call(
            &client.token,
            Method::POST,
            "/api/tickets/",
            Some(
                json!({"project": target.project, "title": format!("Lifecycle ticket {t}"),
                        "description": "Filed by the load bench"}),
            ),
        )
        .await?;
    rest_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    let id = ticket["id"]
        .as_i64()
        .ok_or("the created ticket has no id")?;
    events.push(Event {
        key: format!("{id}:ticket_created"),
        at_us: t0,
        recipients: without(admins.clone(), client.id),
    });
    let steps: [(&Principal, &str, Value, &str, Vec<i64>); 5] = [
        (
            admin,
            "open_ticket",
            json!({}),
            "ticket_opened",
            vec![client.id],
        ),
        (
            admin,
            "assign",
            json!({"developer_ids": dev_ids}),
            "ticket_assigned",
            dev_ids.clone(),
        ),
        (
            &devs[0],
            "start_work",
            json!({}),
            "work_started",
            vec![client.id],
        ),
        (
            &devs[0],
            "finish_work",
            json!({}),
            "work_finished",
            [vec![client.id], admins.clone()].concat(),
        ),
        (
            client,
            "approve",
            json!({}),
            "ticket_approved",
            [admins.clone(), dev_ids.clone()].concat(),
        ),
    ];
    for (who, action, body, kind, recipients) in steps {
        let t0 = wall_us();
        let started = Instant::now();
        target
            .call(
                &who.token,
                Method::POST,
                &format!("/api/tickets/{id}/{action}/"),
                Some(body),
            )
            .await?;
        rest_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        events.push(Event {
            key: format!("{id}:{kind}"),
            at_us: t0,
            recipients: without(recipients, who.id),
        });
    }
    Ok(())
}

/// A ticket storm: concurrent clients, admins and developers walk tickets through their
/// lives over REST, and every expected recipient's notification is checked.
pub async fn lifecycle(a: LifecycleArgs, common: &Common) -> bool {
    let mut report = Report::new(
        "lifecycle",
        json!({"tickets": a.tickets, "in_flight": a.in_flight, "clients": a.clients,
               "admins": a.admins, "developers": a.developers, "database": db_label(common)}),
        "per-recipient latency, REST call to frame",
    );
    let seed = Seed {
        clients: a.clients,
        admins: a.admins.max(1),
        developers: a.developers.max(1),
        project: true,
        restart: false,
    };
    let Some(target) = start(Kind::Hub, common, &seed).await else {
        return false;
    };
    let everyone: Vec<Principal> = target
        .clients
        .iter()
        .chain(&target.admins)
        .chain(&target.developers)
        .cloned()
        .collect();
    let (mut pool, connected) = connect(&target, &everyone, common).await;
    let mut tracker = Tracker::new(&connected.last_seq, check::by_ticket_event);
    let pb = bar(a.tickets as u64, "tickets");
    let cpu0 = target.cpu_secs();
    let started = Instant::now();
    let results: Vec<Walked> = futures::stream::iter(0..a.tickets)
        .map(|t| {
            let target = &target;
            let pb = pb.clone();
            async move {
                let client = &target.clients[t % target.clients.len()];
                let admin = &target.admins[t % target.admins.len()];
                let nd = target.developers.len();
                let devs: Vec<Principal> = if nd > 1 && t % 2 == 0 {
                    vec![
                        target.developers[t % nd].clone(),
                        target.developers[(t + 1) % nd].clone(),
                    ]
                } else {
                    vec![target.developers[t % nd].clone()]
                };
                let r = walk(target, t, client, admin, &devs).await;
                pb.inc(1);
                r
            }
        })
        .buffer_unordered(a.in_flight)
        .collect()
        .await;
    let storm_secs = started.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let mut run = Run::new("hub");
    let mut rest_ms = Vec::new();
    let mut transitions = 0usize;
    let mut failed_calls = 0usize;
    for (events, ms, error) in results {
        transitions += events.len();
        rest_ms.extend(ms);
        for e in events {
            tracker.expect(e.key, e.at_us, e.recipients);
        }
        if let Some(e) = error {
            failed_calls += 1;
            if run.failures.len() < 5 {
                run.failures.push(e);
            }
        }
    }
    if failed_calls > 0 {
        run.failures.push(format!(
            "{failed_calls} tickets stopped at a failed REST call"
        ));
    }
    let want = tracker.expected_total();
    let pb = bar(want as u64, "notifications");
    collect(
        &mut pool,
        &mut tracker,
        want,
        Instant::now() + Duration::from_secs(a.drain),
        &pb,
        0,
    )
    .await;
    pb.finish_and_clear();
    // Anything still in flight is not yet unexpected: give it a moment, then settle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tracker.observe(pool.drain().await);
    tracker.settle();
    let cpu = target.cpu_secs().zip(cpu0).map(|(a, b)| a - b);
    let all_secs = (tracker.last_recv_us as f64 / 1e6
        - (wall_us() as f64 / 1e6 - started.elapsed().as_secs_f64()))
    .max(storm_secs);
    fill_checks(&mut run, &tracker);
    let delivered = tracker.received;
    run.latencies_ms = tracker.take_latencies();
    run.metric("tickets", a.tickets as f64, "");
    run.metric("transitions", transitions as f64, "");
    run.metric(
        "transitions_per_second",
        transitions as f64 / storm_secs,
        "/s",
    );
    run.metric("notifications_expected", want as f64, "");
    run.metric("notifications_delivered", delivered as f64, "");
    run.metric(
        "notifications_per_second",
        delivered as f64 / all_secs,
        "/s",
    );
    run.latency_metrics("");
    run.metric("rest_p50_ms", percentile_of(&rest_ms, 0.5), "ms");
    run.metric("rest_p99_ms", percentile_of(&rest_ms, 0.99), "ms");
    if let Some(c) = cpu {
        run.metric(
            "server_cpu_us_per_transition",
            c * 1e6 / transitions.max(1) as f64,
            "us",
        );
    }
    run.metric("socket_reconnects", pool.reconnects as f64, "");
    report.runs.push(run);
    report.notes.push(
        "expected recipients: ticket_created → admins; ticket_opened → creator; \
         ticket_assigned → new assignees; work_started → creator; work_finished → creator + \
         admins; ticket_approved → admins + assignees; never the actor"
            .into(),
    );
    pool.close().await;
    target.stop().await;
    report.finish(&common.out)
}
