//! The test run's certificate authority: the TLS stand-ins present certificates it signed,
//! and everything the run starts trusts it, through `SSL_CERT_FILE`, which outbound HTTPS
//! reads (the hub's clients verify with the system's roots, and this variable names them, as
//! it does for an operator whose providers sit behind a private CA).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// The authority, its PEM file, and the folder that holds it.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

static CA: OnceLock<TestCa> = OnceLock::new();

/// Makes the run's authority and has everything trust it; called first thing in `main`, before
/// any thread starts.
pub fn trust_test_ca() {
    let ca = test_ca();
    std::env::set_var("SSL_CERT_FILE", &ca.ca_file);
}

/// The run's authority.
pub fn test_ca() -> &'static TestCa {
    CA.get_or_init(TestCa::new)
}

impl TestCa {
    /// A fresh authority (nothing trusts it but the run's, which [`trust_test_ca`] installs).
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tickethub test run CA");
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, issuer.pem()).unwrap();
        TestCa {
            issuer,
            ca_file,
            _dir: dir,
        }
    }

    /// A certificate for `localhost` and `127.0.0.1` under this authority, with its key.
    pub fn issue(&self) -> (rcgen::Certificate, rcgen::KeyPair) {
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert, key)
    }

    /// A server configuration for `localhost` and `127.0.0.1` under this authority, speaking
    /// the ALPN protocols given (`h2`, `http/1.1`).
    pub fn server_config(&self, alpn: &[&str]) -> Arc<rustls::ServerConfig> {
        let (cert, key) = self.issue();
        let chain = vec![cert.der().clone(), self.issuer.der().clone()];
        let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(config)
    }
}
