//! A TCP proxy a test can cut: while down, it drops every connection it carries and holds
//! every new one without an answer, as a server that hangs or a network that dropped its
//! packets would.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Proxy {
    pub port: u16,
    upstream: Arc<Mutex<String>>,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    /// How many connections arrived while it was down (each is held, unanswered).
    held: tokio::sync::watch::Receiver<usize>,
}

impl Proxy {
    /// Carries connections to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (count, held) = tokio::sync::watch::channel(0);
        let upstream = Arc::new(Mutex::new(upstream));
        let (up2, links2, upstream2) = (up.clone(), links.clone(), upstream.clone());
        tokio::spawn(async move {
            let mut holding = Vec::new();
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    holding.push(client);
                    count.send_modify(|n| *n += 1);
                    continue;
                }
                holding.clear();
                let upstream = upstream2.lock().unwrap().clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                links2.lock().unwrap().push(link.abort_handle());
            }
        });
        Proxy {
            port,
            upstream,
            up,
            links,
            held,
        }
    }

    /// Carries new connections to `upstream` from now on (a server that moved).
    pub fn retarget(&self, upstream: String) {
        *self.upstream.lock().unwrap() = upstream;
    }

    /// Cuts it: the connections it carries are dropped, new ones held.
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Carries new connections again (those held stay unanswered until the next one comes).
    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// How many connections it has carried since it was last cut.
    pub fn carried(&self) -> usize {
        self.links.lock().unwrap().len()
    }

    /// Waits until `n` connections in all have been held while it was down.
    pub async fn held(&self, n: usize) {
        let mut held = self.held.clone();
        tokio::time::timeout(crate::harness::patience(), held.wait_for(|h| *h >= n))
            .await
            .unwrap_or_else(|_| panic!("no {n} connections held in time"))
            .expect("the proxy is alive");
    }
}
