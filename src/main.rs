//! The `tickethub` binary: parse the command line and dispatch.

use std::process::ExitCode;

use tickethub::cli::{self, Command, ProjectsCommand, UsersCommand};
use tickethub::config::redact_url;
use tickethub::{app, auth, store, telemetry, Application};
use tickethub_actors::domain::{is_valid_project_key, NewUser, Role};

/// jemalloc, also as the C `malloc` (SQLite's): the hub allocates and frees many small
/// buffers across threads (frames, rows, messages), where glibc's allocator spent a measurable
/// share of the CPU and left more memory resident per socket (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit status for unusable settings (`EX_USAGE`).
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    // What the hub writes (the SQLite database and its log, the mail outbox, key and secret
    // files) holds people's data: readable by the hub's own user only.
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = match cli::parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(
                e.kind(),
                DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let text = e.to_string();
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            eprintln!("{}", line.trim_start_matches("error: "));
            return ExitCode::from(EX_USAGE);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> ExitCode {
    match command {
        Command::Serve(config) => serve(*config).await,
        Command::Users {
            command: UsersCommand::Add(args),
        } => fail_on_err(add_user(args).await),
        Command::Users {
            command: UsersCommand::Deactivate(args),
        } => fail_on_err(set_active(args, false).await),
        Command::Users {
            command: UsersCommand::Activate(args),
        } => fail_on_err(set_active(args, true).await),
        Command::Users {
            command: UsersCommand::SetPassword(args),
        } => fail_on_err(set_password(args).await),
        Command::Users {
            command: UsersCommand::Erase(args),
        } => fail_on_err(erase(args).await),
        Command::Projects {
            command: ProjectsCommand::Add(args),
        } => fail_on_err(add_project(args).await),
        Command::Keys { command } => fail_on_err(keys(command).await),
        Command::Actors(args) => fail_on_err(actors(args).await),
        Command::Trace(args) => fail_on_err(trace(args).await),
        Command::Purge(args) => fail_on_err(purge(args).await),
        Command::Digest {
            command: cli::DigestCommand::Preview(args),
        } => fail_on_err(digest_preview(args).await),
    }
}

async fn digest_preview(args: cli::DigestPreviewArgs) -> Result<(), String> {
    let store = store::connect(&args.db.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let templates = tickethub::delivery::templates::Templates::load(args.templates_dir.as_deref())
        .map_err(|e| e.to_string())?;
    let text = tickethub::digests::preview(
        store.as_ref(),
        &templates,
        &args.user,
        args.public_url.as_deref(),
    )
    .await?;
    print!("{text}");
    Ok(())
}

async fn keys(command: cli::KeysCommand) -> Result<(), String> {
    use tickethub::auth::api_keys::{self, CreateError};
    match command {
        cli::KeysCommand::Create(args) => {
            let store = store::connect(&args.db.database_url)
                .await
                .map_err(|e| e.to_string())?;
            let (key, secret) = api_keys::create(
                store.as_ref(),
                &args.name,
                &args.scopes,
                args.user.as_deref(),
                "cli",
            )
            .await
            .map_err(|e| match e {
                CreateError::Invalid(why) => format!("--{why}"),
                CreateError::Store(e) => e.to_string(),
            })?;
            println!("{secret}");
            eprintln!(
                "created API key `{}` (prefix {}, scopes {}, acting as `{}`); it is shown only now: send it as `Authorization: Api-Key <key>`",
                key.name,
                key.prefix,
                key.scopes.join(","),
                key.username
            );
            Ok(())
        }
        cli::KeysCommand::List(args) => {
            let store = store::connect(&args.db.database_url)
                .await
                .map_err(|e| e.to_string())?;
            let keys = store.api_keys().await.map_err(|e| e.to_string())?;
            let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or("-".to_owned(), tickethub::wire::timestamp)
            };
            if args.json {
                let rows: Vec<_> = keys
                    .iter()
                    .map(tickethub::http::api_keys::ApiKeyJson::from)
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows).expect("JSON"));
                return Ok(());
            }
            println!("NAME\tPREFIX\tSCOPES\tUSER\tCREATED\tLAST USED\tREVOKED");
            for k in &keys {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    k.name,
                    k.prefix,
                    k.scopes.join(","),
                    k.username,
                    tickethub::wire::timestamp(k.created_at),
                    when(k.last_used_at),
                    when(k.revoked_at)
                );
            }
            Ok(())
        }
        cli::KeysCommand::Revoke(args) => {
            let store = store::connect(&args.db.database_url)
                .await
                .map_err(|e| e.to_string())?;
            if store
                .revoke_api_key(&args.name, chrono::Utc::now(), "cli")
                .await
                .map_err(|e| e.to_string())?
            {
                println!("revoked API key `{}`", args.name);
                Ok(())
            } else {
                Err(format!(
                    "no API key `{}` that is not revoked already",
                    args.name
                ))
            }
        }
    }
}

async fn erase(args: cli::UserEraseArgs) -> Result<(), String> {
    if !args.yes {
        return Err(format!(
            "--yes: erasing `{}` cannot be undone; add --yes to erase them",
            args.username
        ));
    }
    let store = store::connect(&args.db.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let found = store
        .user_with_hash(&args.username)
        .await
        .map_err(|e| e.to_string())?;
    let Some((user, _)) = found else {
        store.close().await;
        return Err(format!("no user `{}`", args.username));
    };
    let erased = store
        .erase_user(user.id, "cli")
        .await
        .map_err(|e| e.to_string())?;
    store.close().await;
    let erased = erased.ok_or_else(|| format!("no user `{}`", args.username))?;
    if let Some(url) = &args.redis_url {
        tickethub::bus::announce(
            url,
            &args.redis_prefix,
            &tickethub_actors::ports::BusEvent::SessionsEnded(user.id),
        )
        .await
        .map_err(|e| format!("erased `{}`, but cannot tell the hubs: {e}", args.username))?;
    }
    println!(
        "erased `{}` (id {}, now `{}`); their tickets and comments stay, signed \"{}\"",
        args.username,
        user.id,
        erased.username,
        tickethub::store::ERASED_NAME
    );
    if args.redis_url.is_none() {
        println!(
            "a running hub refuses their requests, connects and token refreshes within its user cache's lifetime (--user-cache-ttl, 10 s by default), and their open sockets lose every admin power then, though they stay open until they end; give --redis-url to close them at once"
        );
    }
    Ok(())
}

async fn purge(args: cli::PurgeArgs) -> Result<(), String> {
    let store = store::connect(&args.db.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let policy = tickethub_actors::purge::RetentionPolicy {
        retention: args.retention,
        unread: args.retention_unread,
        ..Default::default()
    };
    let mut total = 0;
    for (what, cutoff) in policy.cutoffs(chrono::Utc::now()) {
        let n = if args.dry_run {
            store.purgeable(what, cutoff).await
        } else {
            let mut n = 0;
            loop {
                match store.purge(what, cutoff, policy.batch).await {
                    Ok(k) => {
                        n += k;
                        if (k as i64) < policy.batch {
                            break Ok(n);
                        }
                    }
                    Err(e) => break Err(e),
                }
            }
        }
        .map_err(|e| e.to_string())?;
        total += n;
        println!(
            "{:<22} {n:>10}  (older than {})",
            what.as_str(),
            tickethub::timeline::at(cutoff)
        );
    }
    store.close().await;
    println!(
        "{} {total} rows{}",
        if args.dry_run {
            "would delete"
        } else {
            "deleted"
        },
        if args.dry_run {
            " (dry run: nothing was deleted)"
        } else {
            ""
        }
    );
    Ok(())
}

fn fail_on_err(res: Result<(), String>) -> ExitCode {
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: tickethub::ServeConfig) -> ExitCode {
    telemetry::init(config.log_format);
    if let Err(e) = config.validate() {
        eprintln!("{e}");
        return ExitCode::from(EX_USAGE);
    }
    let demo = config.demo;
    if demo && !config.bind.ip().is_loopback() {
        tracing::warn!(
            bind = %config.bind,
            "--demo-public: the demo accounts, whose passwords are published, are reachable from other hosts"
        );
    }
    let database = redact_url(&config.database_url);
    let stop = shutdown_signal();
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("{e}");
            return match e {
                app::BuildError::Config(_) | app::BuildError::Bind { .. } => {
                    ExitCode::from(EX_USAGE)
                }
                _ => ExitCode::FAILURE,
            };
        }
    };
    let addr = app.local_addr();
    if demo {
        if let Err(e) = app::seed_demo(app.store().as_ref()).await {
            eprintln!("cannot create the demo accounts: {e}");
            return ExitCode::FAILURE;
        }
        println!("tickethub demo is running at http://{addr}/ (database {database})");
        println!("Log in with POST http://{addr}/api/auth/login/ as one of:");
        for a in &app::DEMO_ACCOUNTS {
            println!(
                "  {:<10} password {:<16} ({})",
                a.username, a.password, a.role
            );
        }
        println!(
            "They share the project {}. WebSocket: ws://{addr}/ws/notifications/?token=<access>",
            app::DEMO_PROJECT
        );
    } else {
        println!("tickethub is listening on http://{addr}/ (database {database})");
    }
    match app.run_until_stopped(stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is called,
/// not when the future is first polled: a signal that arrives while the hub starts (after it
/// printed its address, say) is a graceful stop too, never the default termination.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn add_user(args: cli::UserAddArgs) -> Result<(), String> {
    let role: Role = args.role.parse().map_err(|e| format!("--role: {e}"))?;
    if args.superuser && role != Role::Admin {
        return Err("--superuser: only admins can be super admins".into());
    }
    if let Some(n) = &args.whatsapp {
        if !tickethub::http::users::is_plausible_phone(n) {
            return Err("--whatsapp: use international format, e.g. +15551234567".into());
        }
    }
    if let Some(n) = &args.phone {
        if !tickethub::http::users::is_plausible_phone(n) {
            return Err("--phone: use international format, e.g. +15551234567".into());
        }
    }
    tickethub::http::users::validate_username(&args.username)
        .map_err(|_| "--username: use letters, digits and @.+-_ only".to_owned())?;
    let (password, generated) = match args.password {
        Some(p) if p.chars().count() >= 8 => (p, false),
        Some(_) => return Err("--password: must be at least 8 characters".into()),
        None => (auth::generate_secret()[..16].to_owned(), true),
    };
    let store = store::connect(&args.db.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let user = store
        .create_user(NewUser {
            username: args.username.clone(),
            display_name: args.display_name.unwrap_or_default(),
            email: args.email,
            whatsapp_number: args.whatsapp,
            phone_number: args.phone,
            role,
            is_superuser: args.superuser,
            password_hash: auth::hash_password(password.clone()).await,
        })
        .await
        .map_err(|e| match e {
            tickethub_actors::ports::StoreError::Conflict(_) => {
                format!("--username: `{}` is already taken", args.username)
            }
            other => other.to_string(),
        })?;
    store.close().await;
    println!("created {} `{}` (id {})", user.role, user.username, user.id);
    if generated {
        println!("password: {password}");
    }
    Ok(())
}

/// Changes one user found by name; returns the changed user.
async fn change_user(
    db: &cli::DatabaseArgs,
    username: &str,
    changes: tickethub_actors::ports::ProfileChanges,
) -> Result<tickethub_actors::domain::User, String> {
    let store = store::connect(&db.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let found = store
        .user_with_hash(username)
        .await
        .map_err(|e| e.to_string())?;
    let Some((user, _)) = found else {
        store.close().await;
        return Err(format!("no user `{username}`"));
    };
    let changed = store
        .update_profile(
            user.id,
            tickethub_actors::ports::ProfileChanges {
                vouched: true,
                by: Some("cli".into()),
                ..changes
            },
        )
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no user `{username}`"))?;
    store.close().await;
    Ok(changed)
}

async fn set_active(args: cli::UserNameArgs, active: bool) -> Result<(), String> {
    let user = change_user(
        &args.db,
        &args.username,
        tickethub_actors::ports::ProfileChanges {
            is_active: Some(active),
            ..Default::default()
        },
    )
    .await?;
    let what = if active { "activated" } else { "deactivated" };
    match (&args.redis_url, active) {
        (Some(url), false) => {
            tickethub::bus::announce(
                url,
                &args.redis_prefix,
                &tickethub_actors::ports::BusEvent::SessionsEnded(user.id),
            )
            .await
            .map_err(|e| format!("{what} `{}`, but cannot tell the hubs: {e}", user.username))?;
            println!("{what} `{}`; the hubs were told to close their sockets", user.username);
        }
        (None, false) => println!(
            "{what} `{}`; a running hub refuses their requests, connects and token refreshes within its user cache's lifetime (--user-cache-ttl, 10 s by default); give --redis-url to make it at once and close open sockets",
            user.username
        ),
        _ => println!("{what} `{}`", user.username),
    }
    Ok(())
}

async fn set_password(args: cli::UserPasswordArgs) -> Result<(), String> {
    if args.password.chars().count() < 8 {
        return Err("--password: must be at least 8 characters".into());
    }
    let user = change_user(
        &args.db,
        &args.username,
        tickethub_actors::ports::ProfileChanges {
            password_hash: Some(auth::hash_password(args.password).await),
            ..Default::default()
        },
    )
    .await?;
    match &args.redis_url {
        Some(url) => {
            tickethub::bus::announce(
                url,
                &args.redis_prefix,
                &tickethub_actors::ports::BusEvent::SessionsEnded(user.id),
            )
            .await
            .map_err(|e| {
                format!(
                    "set the password of `{}`, but cannot tell the hubs: {e}",
                    user.username
                )
            })?;
            println!(
                "set the password of `{}`; their tokens are void and the hubs were told to close their sockets",
                user.username
            );
        }
        None => println!(
            "set the password of `{}`; their tokens are void, on a running hub within its user cache's lifetime (--user-cache-ttl, 10 s by default); give --redis-url to make it at once and close open sockets",
            user.username
        ),
    }
    Ok(())
}

async fn add_project(args: cli::ProjectAddArgs) -> Result<(), String> {
    if !is_valid_project_key(&args.key) {
        return Err("--key: 2 to 10 uppercase letters or digits, starting with a letter".into());
    }
    let store = store::connect(&args.db.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let mut members = Vec::new();
    for name in args.members.iter().filter(|m| !m.is_empty()) {
        match store
            .user_with_hash(name)
            .await
            .map_err(|e| e.to_string())?
        {
            Some((user, _)) => members.push(user.id),
            None => return Err(format!("--members: no user named `{name}`")),
        }
    }
    let project = store
        .create_project(&args.key, &args.name, &members)
        .await
        .map_err(|e| match e {
            tickethub_actors::ports::StoreError::Conflict(_) => {
                format!("--key: a project `{}` exists already", args.key)
            }
            other => other.to_string(),
        })?;
    store.close().await;
    println!(
        "created project {} `{}` (id {}) with {} member(s)",
        project.key,
        project.name,
        project.id,
        project.member_ids.len()
    );
    Ok(())
}

/// Logs in as an admin (or takes the given token) and GETs `path` with `query`.
async fn admin_get(
    hub: cli::HubArgs,
    path: &str,
    query: &[(&str, String)],
) -> Result<serde_json::Value, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let base = hub.url.trim_end_matches('/');
    let client = reqwest::Client::new();
    let token = match (hub.token, hub.username, hub.password) {
        (Some(token), _, _) => token,
        (None, Some(username), Some(password)) => {
            let res = client
                .post(format!("{base}/api/auth/login/"))
                .json(&serde_json::json!({"username": username, "password": password}))
                .send()
                .await
                .map_err(|e| format!("--url: cannot reach {base}: {e}"))?;
            let status = res.status();
            let body: serde_json::Value = res.json().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!(
                    "login failed: {}",
                    body["detail"].as_str().unwrap_or("unknown error")
                ));
            }
            body["access"].as_str().unwrap_or_default().to_owned()
        }
        _ => return Err("--token: give an admin token, or --username and --password".into()),
    };
    let mut url = reqwest::Url::parse(&format!("{base}{path}"))
        .map_err(|e| format!("--url: `{base}` is not a URL: {e}"))?;
    for (k, v) in query {
        url.query_pairs_mut().append_pair(k, v);
    }
    let res = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| format!("--url: cannot reach {base}: {e}"))?;
    let status = res.status();
    let body: serde_json::Value = res.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "{}: {}",
            status.as_u16(),
            body["detail"].as_str().unwrap_or("unknown error")
        ));
    }
    Ok(body)
}

fn print_json(body: &serde_json::Value) -> Result<(), String> {
    println!(
        "{}",
        serde_json::to_string_pretty(body).map_err(|e| e.to_string())?
    );
    Ok(())
}

async fn actors(args: cli::ActorsArgs) -> Result<(), String> {
    let mut query = vec![
        ("limit", args.limit.to_string()),
        ("offset", args.offset.to_string()),
    ];
    if let Some(f) = args.filter {
        query.push(("q", f));
    }
    let body = admin_get(args.hub, "/api/admin/actors", &query).await?;
    if args.json {
        print_json(&body)?;
    } else {
        print!("{}", tickethub::tree::render(&body));
    }
    Ok(())
}

async fn trace(args: cli::TraceArgs) -> Result<(), String> {
    let query = [("ticket", args.ticket), ("user", args.user)];
    let body = admin_get(args.hub, "/api/admin/trace", &query).await?;
    if args.json {
        print_json(&body)?;
    } else {
        print!("{}", tickethub::timeline::render_trace(&body));
    }
    Ok(())
}
