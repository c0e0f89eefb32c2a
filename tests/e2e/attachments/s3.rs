//! An S3-compatible bucket for the tests: `s3s-fs` serving a folder, in process, on a random
//! port, checking every request's signature against one key pair.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tickethub::attachments::AttachmentSettings;

const KEY_ID: &str = "tickethub-test-key";
const SECRET: &str = "tickethub-test-secret-0123456789";

/// A bucket served over HTTP until dropped.
pub struct Bucket {
    name: String,
    endpoint: String,
    root: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Bucket {
    /// Serves an empty bucket `name`.
    pub async fn start(name: &str) -> Bucket {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(name)).unwrap();
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(KEY_ID, SECRET));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Bucket {
            name: name.to_owned(),
            endpoint,
            root,
            task,
        }
    }

    /// Points a hub's settings at this bucket, with its key pair.
    pub fn configure(&self, settings: &mut AttachmentSettings) {
        settings.attachments_dir = None;
        settings.attachments_s3_url = Some(format!("s3://{}", self.name));
        settings.attachments_s3_endpoint = Some(self.endpoint.clone());
        settings.attachments_s3_access_key_id = Some(KEY_ID.to_owned());
        settings.attachments_s3_secret_access_key = Some(SECRET.to_owned());
    }

    /// The keys of the objects in the bucket, as its folder holds them.
    pub fn objects(&self) -> Vec<String> {
        let base = self.root.path().join(&self.name);
        let mut out = Vec::new();
        walk(&base, &base, &mut out);
        out.sort();
        out
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path: PathBuf = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            walk(base, &path, out);
        } else if !name.starts_with('.') {
            out.push(
                path.strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        self.task.abort();
    }
}
