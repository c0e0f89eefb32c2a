//! Unit tests of the settings.

use super::*;

#[test]
fn defaults_validate() {
    ServeConfig::defaults().validate().unwrap();
}

#[test]
fn a_delivery_lease_shorter_than_two_timeouts_is_refused() {
    let mut c = ServeConfig::defaults();
    c.delivery_timeout = 5;
    c.delivery_lease = 9;
    let err = c.validate().unwrap_err();
    assert!(err.to_string().starts_with("--delivery-lease"), "{err}");
    c.delivery_lease = 10;
    c.validate().unwrap();
    c.delivery_lease = 0;
    c.validate().unwrap();
}

#[test]
fn trusted_proxies_are_addresses_or_networks() {
    let mut c = ServeConfig::defaults();
    c.trusted_proxies = vec!["10.0.0.0/8".into(), "127.0.0.1".into(), "::1".into()];
    assert_eq!(c.trusted_proxy_nets().map(|n| n.len()), Some(3));
    c.validate().unwrap();
    c.trusted_proxies = vec!["proxy.internal".into()];
    let err = c.validate().unwrap_err();
    assert!(err.to_string().starts_with("--trusted-proxies"), "{err}");
}

#[test]
fn the_bus_reconcile_interval_must_be_positive() {
    let mut c = ServeConfig::defaults();
    c.bus_reconcile_interval = 0;
    let err = c.validate().unwrap_err();
    assert!(
        err.to_string().starts_with("--bus-reconcile-interval"),
        "{err}"
    );
}

#[test]
fn the_demo_stays_on_loopback_unless_told() {
    let mut c = ServeConfig::defaults();
    c.demo = true;
    c.validate().unwrap();
    c.bind = "0.0.0.0:8080".parse().unwrap();
    let err = c.validate().unwrap_err().to_string();
    assert!(err.starts_with("--demo"), "{err}");
    assert!(err.contains("--demo-public"), "{err}");
    c.demo_public = true;
    c.validate().unwrap();
}

#[test]
fn an_identity_provider_needs_its_issuer_and_https() {
    let mut c = ServeConfig::defaults();
    c.jwt_jwks_url = Some("https://idp.example/certs".into());
    c.jwt_username_claim = Some("preferred_username".into());
    let err = c.validate().unwrap_err().to_string();
    assert!(err.starts_with("--jwt-issuer"), "{err}");
    c.jwt_issuer = Some("https://idp.example/realms/ops".into());
    c.validate().unwrap();
    c.jwt_jwks_url = Some("http://idp.example/certs".into());
    let err = c.validate().unwrap_err().to_string();
    assert!(err.starts_with("--jwt-jwks-url"), "{err}");
    c.jwt_jwks_allow_http = true;
    c.validate().unwrap();
}

#[test]
fn postgres_needs_a_secret() {
    let mut c = ServeConfig::defaults();
    c.database_url = "postgres://localhost/x".into();
    let err = c.validate().unwrap_err();
    assert!(err.to_string().starts_with("--jwt-secret"), "{err}");
}

#[test]
fn unknown_database_schemes_name_the_setting() {
    let mut c = ServeConfig::defaults();
    c.database_url = "mysql://u:pw@h/db".into();
    let err = c.validate().unwrap_err().to_string();
    assert!(err.starts_with("--database-url"), "{err}");
    assert!(!err.contains("pw"), "{err}");
}

#[test]
fn origins_must_be_bare_origins() {
    let mut c = ServeConfig::defaults();
    c.allowed_origins = vec!["https://a.example/".into()];
    assert!(c.validate().is_err());
    c.allowed_origins = vec!["https://a.example".into()];
    c.validate().unwrap();
}

#[test]
fn push_settings_are_checked() {
    let mut c = ServeConfig::defaults();
    c.channels.webpush.webpush_subject = Some("ops@example.com".into());
    let err = c.validate().unwrap_err().to_string();
    assert!(err.starts_with("--webpush-subject"), "{err}");
    c.channels.webpush.webpush_subject = Some("mailto:ops@example.com".into());
    c.validate().unwrap();
    c.channels.apns.apns_key = Some("AuthKey.p8".into());
    let err = c.validate().unwrap_err().to_string();
    assert!(
        err.starts_with("--apns-key") && err.contains("--apns-topic"),
        "{err}"
    );
    c.channels.apns.apns_key = None;
    c.channels.push.push_device_cap = 0;
    let err = c.validate().unwrap_err().to_string();
    assert!(err.starts_with("--push-device-cap"), "{err}");
}
