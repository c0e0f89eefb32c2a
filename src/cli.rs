//! The command line: `serve`, `users add`, `projects add`, and the operator commands `actors` and
//! `trace`.
//!
//! Settings come from flags, the environment and an optional TOML file (`--config FILE`),
//! merged in [`layers`].

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::config::ServeConfig;

mod layers;

/// tickethub: ticket API, WebSocket hub and notification delivery in one binary.
#[derive(Parser, Debug)]
#[command(name = "tickethub", version, about, long_about = None)]
pub struct Cli {
    /// TOML file with settings; its keys are the long flag names (`bind`, `database-url`, …).
    #[arg(long, global = true, env = "TICKETHUB_CONFIG")]
    pub config: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the hub (migrations run at start).
    Serve(Box<ServeConfig>),
    /// Manage users.
    Users {
        /// What to do with users.
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Manage projects.
    Projects {
        /// What to do with projects.
        #[command(subcommand)]
        command: ProjectsCommand,
    },
    /// Manage API keys for servers (`Authorization: Api-Key <key>`).
    Keys {
        /// What to do with keys.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print the live supervision tree of a running hub.
    Actors(ActorsArgs),
    /// Explain, event by event, whether a user was notified about a ticket, and why not.
    Trace(TraceArgs),
    /// Delete what retention says is old enough (`--retention`), once; `--dry-run` only counts.
    Purge(PurgeArgs),
    /// Digests: see what a person's next one would say.
    Digest {
        /// What to do.
        #[command(subcommand)]
        command: DigestCommand,
    },
}

/// `tickethub digest …`.
#[derive(Subcommand, Debug)]
pub enum DigestCommand {
    /// Print the email a person's digest would be if it were sent now (nothing is sent).
    Preview(DigestPreviewArgs),
}

/// `tickethub digest preview`.
#[derive(Args, Debug)]
pub struct DigestPreviewArgs {
    /// Whose digest.
    #[arg(long)]
    pub user: String,
    /// A folder of templates, as `serve --templates-dir`.
    #[arg(long, env = "TICKETHUB_TEMPLATES_DIR")]
    pub templates_dir: Option<std::path::PathBuf>,
    /// The hub's public address, as `serve --public-url` (the digest links tickets on it).
    #[arg(long, env = "TICKETHUB_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DatabaseArgs,
}

/// `tickethub purge`.
#[derive(Args, Debug)]
pub struct PurgeArgs {
    /// Print what would go, per table, and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long read and deleted notifications and history are kept (as `serve --retention`).
    #[arg(long, env = "TICKETHUB_RETENTION", default_value = "180d", value_parser = crate::timespan::parse)]
    pub retention: std::time::Duration,
    /// How long delivered unread notifications are kept (as `serve --retention-unread`).
    #[arg(long, env = "TICKETHUB_RETENTION_UNREAD", value_parser = crate::timespan::parse)]
    pub retention_unread: Option<std::time::Duration>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DatabaseArgs,
}

/// `tickethub keys …`.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Make a key and print it, once (only its hash is stored).
    Create(KeyCreateArgs),
    /// List the keys: name, prefix, scopes, user, last use.
    List(KeyListArgs),
    /// Revoke a key: every hub refuses it from its next request.
    Revoke(KeyRevokeArgs),
}

/// `tickethub keys create`.
#[derive(Args, Debug)]
pub struct KeyCreateArgs {
    /// The key's unique name, shown in timelines and traces.
    #[arg(long)]
    pub name: String,
    /// What it may do, comma-separated: notifications:send, tickets:write, admin:read.
    #[arg(long, value_delimiter = ',', required = true)]
    pub scopes: Vec<String>,
    /// The user the key acts as (for tickets:write, whose role decides the actions); without
    /// it, a service user named after the key is made.
    #[arg(long)]
    pub user: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DatabaseArgs,
}

/// `tickethub keys list`.
#[derive(Args, Debug)]
pub struct KeyListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DatabaseArgs,
}

/// `tickethub keys revoke NAME`.
#[derive(Args, Debug)]
pub struct KeyRevokeArgs {
    /// The key's name.
    pub name: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DatabaseArgs,
}

/// `tickethub trace`.
#[derive(Args, Debug)]
pub struct TraceArgs {
    /// The ticket's id or key (`WEB-5`).
    #[arg(long)]
    pub ticket: String,
    /// The user's id or username.
    #[arg(long)]
    pub user: String,
    /// Print the JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// How to reach the hub.
    #[command(flatten)]
    pub hub: HubArgs,
}

/// How an operator command reaches a running hub, as an admin.
#[derive(Args, Debug)]
pub struct HubArgs {
    /// The hub's base URL.
    #[arg(long, env = "TICKETHUB_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An admin's access token.
    #[arg(long, env = "TICKETHUB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// An admin's username, to log in when no token is given.
    #[arg(long, env = "TICKETHUB_USERNAME")]
    pub username: Option<String>,
    /// That admin's password.
    #[arg(long, env = "TICKETHUB_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

/// `tickethub actors`.
#[derive(Args, Debug)]
pub struct ActorsArgs {
    /// How to reach the hub.
    #[command(flatten)]
    pub hub: HubArgs,
    /// Only actors whose name (or username) contains this.
    #[arg(long)]
    pub filter: Option<String>,
    /// Actors listed per directory.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Actors skipped per directory.
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Print the JSON document instead of a tree.
    #[arg(long)]
    pub json: bool,
}

/// `tickethub users …`.
#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Create a user (like Django's `createsuperuser`).
    Add(UserAddArgs),
    /// Deactivate a user: they can no longer log in, their tokens stop working, and with
    /// `--redis-url` every hub closes their sockets at once (4001).
    Deactivate(UserNameArgs),
    /// Activate a deactivated user again.
    Activate(UserNameArgs),
    /// Set a user's password (from `--password`, or `TICKETHUB_USER_PASSWORD`).
    SetPassword(UserPasswordArgs),
    /// Erase a person: their inbox, preferences, tokens, addresses and memberships go; their
    /// tickets and comments stay, signed "Erased user". Needs `--yes`.
    Erase(UserEraseArgs),
}

/// `tickethub users erase NAME --yes`.
#[derive(Args, Debug)]
pub struct UserEraseArgs {
    /// The user's login name.
    pub username: String,
    /// Confirms the erasure, which cannot be undone.
    #[arg(long)]
    pub yes: bool,
    /// The hubs' Redis, so that running hubs close the user's sockets at once; without it
    /// they refuse the user within their user cache's lifetime, and sockets already open stay
    /// (without admin powers from then on) until they end.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// The hubs' Redis channel prefix.
    #[arg(long, env = "TICKETHUB_REDIS_PREFIX", default_value = "tickethub")]
    pub redis_prefix: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DatabaseArgs,
}

/// `tickethub users deactivate|activate NAME`.
#[derive(Args, Debug)]
pub struct UserNameArgs {
    /// The user's login name.
    pub username: String,
    /// The hubs' Redis, so that running hubs close a deactivated user's sockets at once;
    /// without it they refuse the user's next request, connect and token refresh.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// The hubs' Redis channel prefix.
    #[arg(long, env = "TICKETHUB_REDIS_PREFIX", default_value = "tickethub")]
    pub redis_prefix: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DatabaseArgs,
}

/// `tickethub users set-password NAME`.
#[derive(Args, Debug)]
pub struct UserPasswordArgs {
    /// The user's login name.
    pub username: String,
    /// The new password, at least 8 characters.
    #[arg(long, env = "TICKETHUB_USER_PASSWORD", hide_env_values = true)]
    pub password: String,
    /// The hubs' Redis, so that running hubs close the user's sockets at once; without it
    /// their tokens are refused from now on, and sockets already open stay until they end.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// The hubs' Redis channel prefix.
    #[arg(long, env = "TICKETHUB_REDIS_PREFIX", default_value = "tickethub")]
    pub redis_prefix: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DatabaseArgs,
}

/// `tickethub projects …`.
#[derive(Subcommand, Debug)]
pub enum ProjectsCommand {
    /// Create a project.
    Add(ProjectAddArgs),
}

/// The database a management command works on.
#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// Database URL: `sqlite://FILE` or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://tickethub.db")]
    pub database_url: String,
}

/// `tickethub users add`.
#[derive(Args, Debug)]
pub struct UserAddArgs {
    /// Login name.
    #[arg(long)]
    pub username: String,
    /// Role: admin, developer or client.
    #[arg(long)]
    pub role: String,
    /// Password; a random one is generated and printed when omitted.
    #[arg(long, env = "TICKETHUB_USER_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Email address for email notifications.
    #[arg(long)]
    pub email: Option<String>,
    /// WhatsApp number for WhatsApp notifications (E.164, e.g. +15551234567).
    #[arg(long)]
    pub whatsapp: Option<String>,
    /// Phone number for SMS notifications (E.164, e.g. +15551234567).
    #[arg(long)]
    pub phone: Option<String>,
    /// Name shown to other people.
    #[arg(long)]
    pub display_name: Option<String>,
    /// Make the user a super admin (admins only).
    #[arg(long)]
    pub superuser: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DatabaseArgs,
}

/// `tickethub projects add`.
#[derive(Args, Debug)]
pub struct ProjectAddArgs {
    /// Short key that prefixes ticket keys, e.g. PROJ.
    #[arg(long)]
    pub key: String,
    /// Human name.
    #[arg(long)]
    pub name: String,
    /// Usernames of the members, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub members: Vec<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DatabaseArgs,
}

/// Parses the command line, with the `--config` file under the environment under flags.
pub fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    parse_with_env(args, |name| std::env::var_os(name))
}

/// [`parse`] with `env` in place of the process's environment.
fn parse_with_env<I, T>(args: I, env: impl Fn(&str) -> Option<OsString>) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    // clap's own parse answers `--help`, `--version` and malformed command lines first.
    let matches = Cli::command().try_get_matches_from(&args)?;
    let file = matches.get_one::<PathBuf>("config").cloned();
    layers::parse(&args, &matches, file.as_deref(), &env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn serve(cli: Cli) -> ServeConfig {
        match cli.command {
            Command::Serve(c) => *c,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn the_config_file_fills_what_flags_leave_out() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "bind = \"127.0.0.1:9999\"\ndemo = true\nws_ping_interval = 5\nallowed-origins = [\"https://a.example\", \"https://b.example\"]\ndatabase_url = \"sqlite://from-file.db\""
        )
        .unwrap();
        let path = f.path().to_str().unwrap().to_owned();
        let c = serve(
            parse([
                "tickethub",
                "--config",
                &path,
                "serve",
                "--database-url",
                "sqlite://flag.db",
            ])
            .unwrap(),
        );
        assert_eq!(c.bind.to_string(), "127.0.0.1:9999");
        assert!(c.demo);
        assert_eq!(c.ws_ping_interval, 5);
        assert_eq!(c.database_url, "sqlite://flag.db");
        assert_eq!(
            c.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
    }

    #[test]
    fn unknown_keys_in_the_config_file_are_errors() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "bnid = \"127.0.0.1:9999\"").unwrap();
        let path = f.path().to_str().unwrap().to_owned();
        let err = parse(["tickethub", "--config", &path, "serve"]).unwrap_err();
        assert!(err.to_string().contains("unknown setting `bnid`"), "{err}");
    }

    #[test]
    fn list_items_in_the_config_file_keep_their_commas() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "whatsapp_templates = [\"ticket_assigned=assigned_v2,en\", \"ticket_closed=closed\"]\ntrusted-proxies = \"10.0.0.0/8,127.0.0.1\""
        )
        .unwrap();
        let path = f.path().to_str().unwrap().to_owned();
        let c = serve(parse(["tickethub", "--config", &path, "serve"]).unwrap());
        assert_eq!(
            c.channels.whatsapp.whatsapp_templates,
            ["ticket_assigned=assigned_v2,en", "ticket_closed=closed"]
        );
        // A string is still a comma-separated list, as on the command line.
        assert_eq!(c.trusted_proxies, ["10.0.0.0/8", "127.0.0.1"]);
    }

    #[test]
    fn flags_win_over_the_environment_which_wins_over_the_file() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "bind = \"127.0.0.1:1001\"\nws_ping_interval = 7\nredis_prefix = \"file\"\nallowed_origins = [\"https://file.example\"]"
        )
        .unwrap();
        let path = f.path().to_str().unwrap().to_owned();
        let env = |name: &str| -> Option<OsString> {
            match name {
                "TICKETHUB_BIND" => Some("127.0.0.1:2002".into()),
                "TICKETHUB_WS_PING_INTERVAL" => Some("9".into()),
                "TICKETHUB_ALLOWED_ORIGINS" => Some("https://a.example,https://b.example".into()),
                "TICKETHUB_DEMO" => Some("true".into()),
                "TICKETHUB_WEBHOOK_SECRET" => Some("0123".into()),
                _ => None,
            }
        };
        let c = serve(
            parse_with_env(
                [
                    "tickethub",
                    "--config",
                    &path,
                    "serve",
                    "--bind",
                    "127.0.0.1:3003",
                ],
                env,
            )
            .unwrap(),
        );
        assert_eq!(c.bind.to_string(), "127.0.0.1:3003");
        assert_eq!(c.ws_ping_interval, 9);
        assert_eq!(c.redis_prefix, "file");
        assert_eq!(
            c.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        assert!(c.demo);
        // Values are taken as written: a secret of digits keeps its leading zero.
        assert_eq!(c.channels.webhook.webhook_secret.as_deref(), Some("0123"));
    }

    #[test]
    fn a_bad_value_in_the_environment_names_the_setting() {
        let env = |name: &str| (name == "TICKETHUB_WS_PING_INTERVAL").then(|| "soon".into());
        let err = parse_with_env(["tickethub", "serve"], env).unwrap_err();
        assert!(err.to_string().contains("--ws-ping-interval"), "{err}");
    }

    #[test]
    fn a_list_default_stays_a_list_and_a_comma_separated_value_splits() {
        let c = serve(parse(["tickethub", "serve"]).unwrap());
        assert_eq!(
            c.attachments.attachment_types,
            crate::attachments::kinds::DEFAULT_TYPES.map(String::from)
        );
        let env = |name: &str| {
            (name == "TICKETHUB_ATTACHMENT_TYPES").then(|| "image/*,text/plain".into())
        };
        let c = serve(parse_with_env(["tickethub", "serve"], env).unwrap());
        assert_eq!(c.attachments.attachment_types, ["image/*", "text/plain"]);
    }

    #[test]
    fn management_commands_read_the_file_and_their_positionals() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "database_url = \"sqlite://from-file.db\"\nbind = \"127.0.0.1:1\""
        )
        .unwrap();
        let path = f.path().to_str().unwrap().to_owned();
        let cli = parse_with_env(
            ["tickethub", "--config", &path, "users", "deactivate", "ada"],
            |_| None,
        )
        .unwrap();
        match cli.command {
            Command::Users {
                command: UsersCommand::Deactivate(a),
            } => {
                assert_eq!(a.username, "ada");
                assert_eq!(a.db.database_url, "sqlite://from-file.db");
            }
            other => panic!("not users deactivate: {other:?}"),
        }
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = parse(["tickethub", "serve", "--bind", "nowhere"]).unwrap_err();
        assert!(err.to_string().contains("--bind"), "{err}");
    }
}
