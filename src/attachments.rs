//! Files attached to tickets: where their bytes live, which may come in, and the links that
//! let a page show them.
//!
//! The bytes are objects in an [`ObjectStore`]: a folder beside the SQLite database by
//! default (`<file>.attachments/`), another folder (`--attachments-dir`, shared by the nodes
//! of a cluster), or an S3-compatible bucket (`--attachments-s3-url`). Their records are rows
//! (`AttachmentStore`); a deleted file's object is removed by a sweeper that takes the
//! tombstones the database lists, so a crash between the two loses nothing but time.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hmac::{KeyInit, Mac};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tickethub_actors::domain::UserId;
use tickethub_actors::ports::Store;

use crate::setting::ConfigError;

pub mod kinds;
pub use kinds::{clean_name, decide, inline_image, looks_like, Kinds};

/// Where attachments are kept and what they may be.
#[derive(clap::Args, Clone, Debug)]
pub struct AttachmentSettings {
    /// Folder that keeps attached files (every node of a cluster needs the same one). Default:
    /// `<database file>.attachments/` beside an SQLite database; a PostgreSQL hub without this
    /// or `--attachments-s3-url` takes no attachments.
    #[arg(long, env = "TICKETHUB_ATTACHMENTS_DIR")]
    pub attachments_dir: Option<std::path::PathBuf>,

    /// An S3-compatible bucket that keeps attached files instead: `s3://bucket` or
    /// `s3://bucket/prefix`.
    #[arg(long, env = "TICKETHUB_ATTACHMENTS_S3_URL")]
    pub attachments_s3_url: Option<String>,

    /// The S3 endpoint, for a service other than AWS (MinIO, Garage, Ceph, R2 …):
    /// `https://s3.example.com`; `http://` is allowed for a local one.
    #[arg(long, env = "TICKETHUB_ATTACHMENTS_S3_ENDPOINT")]
    pub attachments_s3_endpoint: Option<String>,

    /// The bucket's region.
    #[arg(
        long,
        env = "TICKETHUB_ATTACHMENTS_S3_REGION",
        default_value = "us-east-1"
    )]
    pub attachments_s3_region: String,

    /// The S3 access key id (default: `AWS_ACCESS_KEY_ID`).
    #[arg(long, env = "TICKETHUB_ATTACHMENTS_S3_ACCESS_KEY_ID")]
    pub attachments_s3_access_key_id: Option<String>,

    /// The S3 secret access key (default: `AWS_SECRET_ACCESS_KEY`).
    #[arg(
        long,
        env = "TICKETHUB_ATTACHMENTS_S3_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    pub attachments_s3_secret_access_key: Option<String>,

    /// The largest file taken, in bytes.
    #[arg(long, env = "TICKETHUB_ATTACHMENT_MAX_BYTES", default_value_t = 10 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub attachment_max_bytes: u64,

    /// The media types taken, comma-separated; `image/*` takes every type of `image/`. A file
    /// whose type is not on the list is refused (415).
    #[arg(
        long,
        env = "TICKETHUB_ATTACHMENT_TYPES",
        value_delimiter = ',',
        default_values = kinds::DEFAULT_TYPES
    )]
    pub attachment_types: Vec<String>,
}

/// The attachment store of a running hub.
pub struct Attachments {
    objects: Arc<dyn ObjectStore>,
    /// Where, for logs and the operators' output.
    pub location: String,
    /// The largest file taken.
    pub max_bytes: u64,
    /// The media types taken.
    pub kinds: Kinds,
    link_key: [u8; 32],
    sweep: tokio::sync::Notify,
}

impl std::fmt::Debug for Attachments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachments")
            .field("location", &self.location)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

/// How long a download link a page was given works.
pub const LINK_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(12);

const FLAG_DIR: &str = "--attachments-dir (TICKETHUB_ATTACHMENTS_DIR)";
const FLAG_S3: &str = "--attachments-s3-url (TICKETHUB_ATTACHMENTS_S3_URL)";

impl Attachments {
    /// The attachment store the settings name; `None` when there is none (a PostgreSQL hub
    /// given neither a folder nor a bucket). `beside` is the SQLite database's file, if any;
    /// `key_material` signs download links (a random key without it: links then work on the
    /// node that made them only).
    pub fn open(
        settings: &AttachmentSettings,
        beside: Option<&std::path::Path>,
        in_memory_sqlite: bool,
        key_material: Option<&[u8]>,
    ) -> Result<Option<Self>, ConfigError> {
        let kinds = Kinds::parse(&settings.attachment_types)?;
        let (objects, location): (Arc<dyn ObjectStore>, String) =
            match (&settings.attachments_s3_url, &settings.attachments_dir) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(
                        FLAG_S3,
                        "give either a bucket or --attachments-dir, not both",
                    ))
                }
                (Some(url), None) => (Arc::new(s3(settings, url)?), url.clone()),
                (None, Some(dir)) => (Arc::new(folder(dir, FLAG_DIR)?), dir.display().to_string()),
                (None, None) => match beside {
                    Some(db) => {
                        let mut dir = db.as_os_str().to_owned();
                        dir.push(".attachments");
                        let dir = std::path::PathBuf::from(dir);
                        (Arc::new(folder(&dir, FLAG_DIR)?), dir.display().to_string())
                    }
                    None if in_memory_sqlite => (
                        Arc::new(object_store::memory::InMemory::new()),
                        "memory".to_owned(),
                    ),
                    None => return Ok(None),
                },
            };
        let link_key = match key_material {
            Some(material) => {
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(material)
                    .expect("HMAC takes any key");
                mac.update(b"tickethub attachment links v1");
                mac.finalize().into_bytes().into()
            }
            None => rand::random(),
        };
        Ok(Some(Self {
            objects,
            location,
            max_bytes: settings.attachment_max_bytes,
            kinds,
            link_key,
            sweep: tokio::sync::Notify::new(),
        }))
    }

    /// A new object's key for a file of `ticket`.
    pub fn new_key(ticket: i64) -> String {
        format!("tickets/{ticket}/{}", uuid::Uuid::new_v4().simple())
    }

    /// Stores a file's bytes.
    pub async fn put(&self, key: &str, bytes: bytes::Bytes) -> Result<(), object_store::Error> {
        self.objects
            .put(&ObjectPath::from(key), PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
    }

    /// A file's bytes, as a stream.
    pub async fn get(
        &self,
        key: &str,
    ) -> Result<
        futures::stream::BoxStream<'static, Result<bytes::Bytes, object_store::Error>>,
        object_store::Error,
    > {
        Ok(self
            .objects
            .get(&ObjectPath::from(key))
            .await?
            .into_stream())
    }

    /// Whether an object is stored under `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, object_store::Error> {
        match self.objects.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn mac(&self, claims: &str) -> String {
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.link_key).expect("HMAC takes any key");
        mac.update(claims.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// The `access` value of a download link of attachment `id` for `user`, until `until`:
    /// the hub checks at each download that `user` still may see the ticket.
    pub fn link_token(
        &self,
        id: i64,
        user: UserId,
        until: chrono::DateTime<chrono::Utc>,
    ) -> String {
        let claims = format!("{id}:{}:{}", user.0, until.timestamp());
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&claims);
        format!("{encoded}.{}", self.mac(&claims))
    }

    /// Whose link `token` is, if this hub signed it for attachment `id` and it has not run out.
    pub fn check_link(
        &self,
        token: &str,
        id: i64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<UserId> {
        let (encoded, given) = token.split_once('.')?;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .ok()
            .and_then(|c| String::from_utf8(c).ok())?;
        let expected = self.mac(&claims);
        if !crate::secret::constant_time_eq(expected.as_bytes(), given.as_bytes()) {
            return None;
        }
        let mut parts = claims.split(':');
        let (Some(aid), Some(user), Some(until), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let until: i64 = until.parse().ok()?;
        (aid.parse::<i64>().ok()? == id && now.timestamp() <= until)
            .then(|| user.parse().ok().map(UserId))
            .flatten()
    }

    /// Wakes the sweeper (a file was deleted).
    pub fn sweep_soon(&self) {
        self.sweep.notify_one();
    }

    /// Removes the objects of deleted files, now and whenever woken or every `interval`,
    /// until `stop` fires.
    pub async fn sweep(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        interval: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        loop {
            if let Err(e) = self.sweep_once(&store).await {
                tracing::warn!(error = %e, "removing deleted attachments failed; trying again later");
            }
            tokio::select! {
                _ = self.sweep.notified() => {}
                _ = tokio::time::sleep(interval) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Removes the objects of deleted files; answers how many.
    pub async fn sweep_once(&self, store: &Arc<dyn Store>) -> Result<usize, String> {
        let mut removed = 0;
        loop {
            let batch = store
                .objects_to_remove(100)
                .await
                .map_err(|e| e.to_string())?;
            if batch.is_empty() {
                return Ok(removed);
            }
            let n = batch.len();
            for (id, key) in batch {
                match self.objects.delete(&ObjectPath::from(key.as_str())).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.to_string()),
                }
                store
                    .object_removed(id, chrono::Utc::now())
                    .await
                    .map_err(|e| e.to_string())?;
                removed += 1;
            }
            if n < 100 {
                return Ok(removed);
            }
        }
    }
}

fn folder(
    dir: &std::path::Path,
    flag: &'static str,
) -> Result<object_store::local::LocalFileSystem, ConfigError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ConfigError::new(flag, format!("cannot create {}: {e}", dir.display())))?;
    object_store::local::LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| ConfigError::new(flag, format!("cannot use {}: {e}", dir.display())))
}

fn s3(
    settings: &AttachmentSettings,
    url: &str,
) -> Result<object_store::aws::AmazonS3, ConfigError> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| ConfigError::new(FLAG_S3, "must start with s3://"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(ConfigError::new(FLAG_S3, "names no bucket"));
    }
    if !prefix.trim_matches('/').is_empty() {
        return Err(ConfigError::new(
            FLAG_S3,
            "a prefix inside the bucket is not supported; give a bucket of its own",
        ));
    }
    let mut builder = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(&settings.attachments_s3_region);
    let key_id = settings
        .attachments_s3_access_key_id
        .clone()
        .or_else(|| std::env::var("AWS_ACCESS_KEY_ID").ok());
    let secret = settings
        .attachments_s3_secret_access_key
        .clone()
        .or_else(|| std::env::var("AWS_SECRET_ACCESS_KEY").ok());
    match (key_id, secret) {
        (Some(id), Some(secret)) => {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        _ => {
            return Err(ConfigError::new(
                "--attachments-s3-access-key-id, --attachments-s3-secret-access-key",
                "are required with --attachments-s3-url (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
            ))
        }
    }
    if let Some(endpoint) = &settings.attachments_s3_endpoint {
        builder = builder
            .with_endpoint(endpoint.trim_end_matches('/'))
            .with_allow_http(endpoint.starts_with("http://"));
    }
    builder
        .build()
        .map_err(|e| ConfigError::new(FLAG_S3, e.to_string()))
}
