use super::*;

pub(super) async fn identity_provider_keys_come_from_a_jwks_and_rotate() {
    use jsonwebtoken::{jwk::Jwk, Algorithm, EncodingKey, Header};
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let pem = |name: &str| std::fs::read(fixtures.join(name)).unwrap();
    const AUD: &str = "tickethub-web";
    const ISS: &str = "https://idp.example.test/realms/ops";
    let rsa = EncodingKey::from_rsa_pem(&pem("rs256-private.pem")).unwrap();
    let ec = EncodingKey::from_ec_pem(&pem("es256-private.pem")).unwrap();
    let ed = EncodingKey::from_ed_pem(&pem("ed25519-private.pem")).unwrap();
    let jwk = |key: &EncodingKey, alg: Algorithm, kid: &str| {
        let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
        jwk.common.key_id = Some(kid.into());
        serde_json::to_value(jwk).unwrap()
    };
    // Ed25519 public keys cannot be derived by jsonwebtoken; the fixture holds `x`.
    let ed_x = std::fs::read_to_string(fixtures.join("ed25519-public.x")).unwrap();
    let ed_jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "k3", "use": "sig",
                        "x": ed_x.trim()});
    let first = json!({"keys": [jwk(&rsa, Algorithm::RS256, "k1")]});
    let rotated = json!({"keys": [jwk(&ec, Algorithm::ES256, "k2"), ed_jwk]});

    let idp = JwksServer::start(first).await;
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.jwt_jwks_url = Some(idp.url.clone());
        c.jwt_jwks_allow_http = true;
        c.jwt_jwks_refetch_floor = 0;
        c.jwt_audience = Some(AUD.into());
        c.jwt_issuer = Some(ISS.into());
        c.jwt_username_claim = Some("preferred_username".into());
    })
    .await;
    let alice = hub.user("kc-alice", Role::Developer).await;
    let now = chrono::Utc::now().timestamp();
    let token = |key: &EncodingKey, alg: Algorithm, kid: &str, username: &str| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        // As Keycloak issues them: a UUID `sub`, `aud` a list, no `token_type`.
        let claims = json!({
            "sub": format!("f3b1c2d4-{username}"), "exp": now + 600, "iat": now,
            "aud": ["account", AUD], "iss": ISS, "preferred_username": username,
            "typ": "Bearer", "azp": "tickethub-web",
        });
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    };
    let me = |token: String| {
        let hub = &hub;
        async move { hub.get("/api/users/me/", Some(&token)).await }
    };

    let k1 = token(&rsa, Algorithm::RS256, "k1", "kc-alice");
    let (status, body) = me(k1.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], alice.id.0);
    assert_eq!(body["username"], "kc-alice");
    let mut ws = Ws::connect(&hub.ws_url(&format!("/ws/notifications/?token={k1}"))).await;
    assert_eq!(ws.established().await["user_id"], alice.id.0);
    // A user the hub does not know, a key signed under another key's id, and a token whose
    // header claims another algorithm than its key's.
    assert_eq!(
        me(token(&rsa, Algorithm::RS256, "k1", "nobody")).await.0,
        401
    );
    assert_eq!(
        me(token(&ec, Algorithm::ES256, "k1", "kc-alice")).await.0,
        401
    );
    assert_eq!(
        me(token(&rsa, Algorithm::RS256, "k9", "kc-alice")).await.0,
        401
    );
    // The hub's own tokens still count beside the provider's.
    assert_eq!(me(hub.token(&alice)).await.0, 200);

    // The provider rotates its keys; the hub follows when it first sees a new `kid`.
    idp.serve(rotated);
    let before = idp.fetches();
    let (status, body) = me(token(&ec, Algorithm::ES256, "k2", "kc-alice")).await;
    assert_eq!(status, 200, "{body}");
    assert!(idp.fetches() > before);
    assert_eq!(
        me(token(&ed, Algorithm::EdDSA, "k3", "kc-alice")).await.0,
        200
    );
    // The withdrawn key no longer verifies, even for a token signed before the rotation.
    assert_eq!(me(k1.clone()).await.0, 401);
    ws.send_json(json!({"type": "refresh_token", "token": k1}))
        .await;
    assert_eq!(ws.next_of("error").await["code"], "invalid_token");

    // With a floor, tokens naming made-up keys cannot make the hub hammer the provider.
    let idp2 = JwksServer::start(json!({"keys": []})).await;
    let guarded = TestHub::start_with(&Backend::Sqlite, |c| {
        c.jwt_jwks_url = Some(idp2.url.clone());
        c.jwt_jwks_allow_http = true;
        c.jwt_issuer = Some(ISS.into());
        c.jwt_jwks_refetch_floor = 3600;
    })
    .await;
    for i in 0..20 {
        let t = token(&rsa, Algorithm::RS256, &format!("made-up-{i}"), "kc-alice");
        assert_eq!(guarded.get("/api/users/me/", Some(&t)).await.0, 401);
    }
    assert!(
        idp2.fetches() <= 1,
        "{} fetches for 20 unknown kids",
        idp2.fetches()
    );
}

/// A Keycloak-like provider's keys and tokens for the tests below.
pub(super) struct Provider {
    idp: JwksServer,
    rsa: jsonwebtoken::EncodingKey,
    /// The key set it serves at first.
    keys: Value,
}

pub(super) const PROVIDER_ISS: &str = "https://idp.example.test/realms/ops";

impl Provider {
    async fn start() -> Provider {
        use jsonwebtoken::{jwk::Jwk, Algorithm, EncodingKey};
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let rsa =
            EncodingKey::from_rsa_pem(&std::fs::read(fixtures.join("rs256-private.pem")).unwrap())
                .unwrap();
        let mut jwk = Jwk::from_encoding_key(&rsa, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some("k1".into());
        let keys = json!({"keys": [serde_json::to_value(jwk).unwrap()]});
        let idp = JwksServer::start(keys.clone()).await;
        Provider { idp, rsa, keys }
    }

    fn configure(&self, c: &mut tickethub::ServeConfig) {
        c.jwt_jwks_url = Some(self.idp.url.clone());
        c.jwt_jwks_allow_http = true;
        c.jwt_issuer = Some(PROVIDER_ISS.into());
        c.jwt_username_claim = Some("preferred_username".into());
    }

    /// A token with these claims over the usual ones, and this header `typ`.
    fn token(&self, typ: Option<&str>, extra: Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("k1".into());
        header.typ = typ.map(str::to_owned);
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "sub": "sub-alice", "exp": now + 600, "iat": now, "iss": PROVIDER_ISS,
            "preferred_username": "kc-alice", "typ": "Bearer",
        });
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        jsonwebtoken::encode(&header, &claims, &self.rsa).unwrap()
    }
}

pub(super) async fn provider_users_are_linked_by_subject_and_only_access_tokens_count(
    backend: Backend,
) {
    let provider = Provider::start().await;
    let hub = TestHub::start_with(&backend, |c| provider.configure(c)).await;
    let alice = hub.user("kc-alice", Role::Developer).await;
    let me = |token: String| {
        let hub = &hub;
        async move { hub.get("/api/users/me/", Some(&token)).await }
    };
    let (status, body) = me(provider.token(Some("JWT"), json!({}))).await;
    assert_eq!((status, &body["id"]), (200, &json!(alice.id.0)), "{body}");
    // Another account at the provider that takes the name later is not alice.
    let (status, _) = me(provider.token(None, json!({"sub": "sub-impostor"}))).await;
    assert_eq!(status, 401);
    // Alice renamed at the provider is still alice: the link decides.
    let (status, body) = me(provider.token(None, json!({"preferred_username": "alice2"}))).await;
    assert_eq!((status, &body["id"]), (200, &json!(alice.id.0)), "{body}");
    // ID tokens and other token kinds of the same provider are no keys to the API.
    for (typ, extra) in [
        (None, json!({"typ": "ID"})),
        (None, json!({"typ": "Refresh"})),
        (None, json!({"token_use": "id"})),
        (Some("id+jwt"), json!({})),
    ] {
        let (status, body) = me(provider.token(typ, extra.clone())).await;
        assert_eq!(status, 401, "{typ:?} {extra}: {body}");
    }
    assert_eq!(
        me(provider.token(Some("at+jwt"), json!({"token_use": "access"})))
            .await
            .0,
        200
    );
    // Another issuer signing with the same keys (another realm, another tenant) is refused.
    let (status, _) = me(provider.token(
        None,
        json!({"iss": "https://idp.example.test/realms/other"}),
    ))
    .await;
    assert_eq!(status, 401);
}

pub(super) async fn keys_grown_old_are_refreshed_without_holding_requests() {
    let provider = Provider::start().await;
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        provider.configure(c);
        c.jwt_jwks_max_age = 1;
        c.jwt_jwks_refetch_floor = 0;
    })
    .await;
    hub.user("kc-alice", Role::Developer).await;
    let token = provider.token(None, json!({}));
    assert_eq!(hub.get("/api/users/me/", Some(&token)).await.0, 200);
    let fetched = provider.idp.fetches();
    // Every later fetch now hangs until the test opens the gate: a request that waited for
    // the provider would never be answered.
    provider.idp.close().await;
    let answered = tokio::time::timeout(crate::harness::patience() * 2, async {
        eventually("the key set grows old and its refresh starts", || async {
            assert_eq!(hub.get("/api/users/me/", Some(&token)).await.0, 200);
            provider.idp.fetches() > fetched
        })
        .await;
        for _ in 0..5 {
            assert_eq!(hub.get("/api/users/me/", Some(&token)).await.0, 200);
        }
    })
    .await;
    assert!(answered.is_ok(), "a request waited on the provider's fetch");
    assert_eq!(provider.idp.fetches(), fetched + 1, "one refresh at a time");
    provider.idp.open();
}

pub(super) async fn provider_keys_are_held_through_an_outage_age_out_and_never_outrank_the_local_user(
    backend: Backend,
) {
    let provider = Provider::start().await;
    let hub = TestHub::start_with(&backend, |c| {
        provider.configure(c);
        c.jwt_jwks_max_age = 1;
        c.jwt_jwks_refetch_floor = 0;
    })
    .await;
    let alice = hub.user("kc-alice", Role::Developer).await;
    let admin = hub.user_with("root", Role::Admin, true).await;
    let token = provider.token(None, json!({}));
    let me = |token: String| {
        let hub = &hub;
        async move { hub.get("/api/users/me/", Some(&token)).await.0 }
    };
    assert_eq!(me(token.clone()).await, 200);

    // The provider goes down: the keys the hub holds go on verifying, however old they grow.
    provider.idp.serve(Value::Null);
    let fetched = provider.idp.fetches();
    eventually("two refreshes fail", || async {
        assert_eq!(me(token.clone()).await, 200, "a held key stopped verifying");
        provider.idp.fetches() >= fetched + 2
    })
    .await;
    assert_eq!(me(token.clone()).await, 200);

    // It comes back without the key (withdrawn at the provider): once the aged set is fetched
    // again, the key's tokens stop verifying, though no token named an unknown key.
    provider.idp.serve(json!({"keys": []}));
    eventually("the withdrawn key stops verifying", || async {
        me(token.clone()).await == 401
    })
    .await;
    provider.idp.serve(provider.keys.clone());
    eventually("the key is back", || async {
        me(token.clone()).await == 200
    })
    .await;

    // A provider's access token is no refresh token.
    let (status, body) = hub
        .post("/api/auth/refresh/", None, json!({"refresh": token}))
        .await;
    assert_eq!(status, 401, "{body}");

    // The hub's own record decides who may come in: a user deactivated here is refused,
    // whatever the provider still signs, on REST and on sockets.
    let mut ws = Ws::connect(&hub.ws_url(&format!("/ws/notifications/?token={token}"))).await;
    assert_eq!(ws.established().await["user_id"], alice.id.0);
    patch_as(
        &hub,
        &admin,
        &format!("/api/users/{}/", alice.id.0),
        json!({"is_active": false}),
        200,
    )
    .await;
    assert_eq!(ws.close_code().await, 4001);
    assert_eq!(me(token.clone()).await, 401);
    let fresh = provider.token(None, json!({"jti": "after-deactivation"}));
    assert_eq!(me(fresh.clone()).await, 401);
    let mut refused = Ws::connect(&hub.ws_url(&format!("/ws/notifications/?token={fresh}"))).await;
    assert_eq!(refused.close_code().await, 4001);
}
