//! `file`: every notification appended as one JSON line to a file of the deployment's
//! (`--file-sink-path`), for an audit copy, a log shipper or a test. A deployment channel, as
//! webhooks are: one line per notification and destination, naming every recipient.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tickethub_actors::ports::{DeliveryJob, Transport, TransportError};
use tokio::io::AsyncWriteExt;

use crate::setting::ConfigError;

/// The file sink's settings.
#[derive(clap::Args, Clone, Debug)]
#[group(skip)]
pub struct Settings {
    /// A file that receives every notification as one JSON line (created if missing, appended
    /// to). Unset: the file sink is off.
    #[arg(long, env = "TICKETHUB_FILE_SINK_PATH")]
    pub file_sink_path: Option<PathBuf>,
}

/// The file sink.
pub struct FileSink;

impl crate::channels::Plugin for FileSink {
    const NAME: &'static str = "file";
    const REACH: tickethub_actors::routing::Reach = tickethub_actors::routing::Reach::Deployment;
    type Settings = Settings;

    fn validate(s: &Settings) -> Result<(), ConfigError> {
        if let Some(path) = &s.file_sink_path {
            if path.as_os_str().is_empty() || path.is_dir() {
                return Err(ConfigError::new(
                    "--file-sink-path (TICKETHUB_FILE_SINK_PATH)",
                    format!("`{}` is not a file", path.display()),
                ));
            }
        }
        Ok(())
    }

    fn transport(
        settings: &crate::channels::Settings,
        _ctx: &crate::channels::Context,
    ) -> Result<Option<Arc<dyn Transport>>, ConfigError> {
        Ok(settings.file.file_sink_path.clone().map(|path| {
            Arc::new(FileTransport {
                path,
                writing: tokio::sync::Mutex::new(()),
            }) as Arc<dyn Transport>
        }))
    }

    fn destinations(s: &Settings) -> Vec<String> {
        s.file_sink_path
            .iter()
            .map(|p| p.display().to_string())
            .collect()
    }
}

/// Appends each delivery to the file, one line at a time.
struct FileTransport {
    path: PathBuf,
    writing: tokio::sync::Mutex<()>,
}

#[async_trait]
impl Transport for FileTransport {
    async fn send(&self, job: &DeliveryJob) -> Result<Option<String>, TransportError> {
        let n = &job.notification;
        let mut line = serde_json::json!({
            "delivery_id": job.id,
            "notification_id": n.id,
            "notification_type": n.notification_type.as_str(),
            "title": n.title,
            "message": n.message,
            "ticket": n.ticket.as_ref().map(|t| t.key.clone()),
            "recipients": job.recipients.iter().map(|r| r.user_id.0).collect::<Vec<_>>(),
            "created_at": crate::wire::timestamp(n.created_at),
        })
        .to_string();
        line.push('\n');
        let failed = |e: std::io::Error| TransportError::Retryable {
            message: format!("cannot write {}: {e}", self.path.display()),
            retry_after: None,
        };
        // One writer at a time: lines never interleave.
        let _turn = self.writing.lock().await;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(failed)?;
        file.write_all(line.as_bytes()).await.map_err(failed)?;
        file.sync_data().await.map_err(failed)?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;
    use tickethub_actors::domain::{NewUser, Role};

    /// The toy channel end to end: a hub with the file sink on, a send over the API, and
    /// every notification of it, one line each, in the file.
    #[tokio::test]
    async fn every_notification_lands_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let sink = dir.path().join("notifications.jsonl");
        let mut config = crate::config::ServeConfig::defaults();
        config.bind = "127.0.0.1:0".parse().unwrap();
        config.database_url = format!("sqlite://{}", dir.path().join("hub.db").display());
        config.jwt_secret = Some("file-sink-test-secret-file-sink-test-secret".into());
        config.channels.email.mail_outbox_dir = dir.path().join("mail");
        config.channels.file.file_sink_path = Some(sink.clone());
        config.delivery_poll_ms = 20;
        let app = crate::Application::build(config).await.unwrap();
        let (addr, store, auth) = (app.local_addr(), app.store(), app.auth());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let user = |name: &str, role| NewUser::new(name, role, "x");
        let admin = store.create_user(user("root", Role::Admin)).await.unwrap();
        let ann = store.create_user(user("ann", Role::Client)).await.unwrap();
        let bob = store.create_user(user("bob", Role::Client)).await.unwrap();
        let sent = reqwest::Client::new()
            .post(format!("http://{addr}/api/notifications/send/"))
            .bearer_auth(auth.issue_access(&admin).unwrap())
            .json(&serde_json::json!({
                "user_ids": [ann.id.0, bob.id.0],
                "notification_type": "deploy_done",
                "title": "Deployed",
                "message": "Version 2 is live.",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), 201);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let lines = loop {
            let text = tokio::fs::read_to_string(&sink).await.unwrap_or_default();
            let lines: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if !lines.is_empty() || tokio::time::Instant::now() > deadline {
                break lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // One line for the send, naming both recipients (as a webhook's one post does).
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["title"], "Deployed");
        assert_eq!(lines[0]["notification_type"], "deploy_done");
        assert_eq!(lines[0]["recipients"], serde_json::json!([ann.id.0, bob.id.0]));
        // A channel like any other: named in routes and preferences.
        assert!("file"
            .parse::<tickethub_actors::routing::Channel>()
            .is_ok());
        let _ = stop.send(());
        running.await.unwrap().unwrap();
    }
}
