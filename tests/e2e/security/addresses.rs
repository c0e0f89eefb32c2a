use super::*;

/// The token of the link in a verification email.
pub(super) fn link_token(text: &str) -> String {
    let at = text
        .find("https://tickets.example.test/verify/?token=")
        .expect("a link")
        + "https://tickets.example.test/verify/?token=".len();
    text[at..]
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

/// The six-digit code in a verification message.
pub(super) fn code_in(text: &str) -> String {
    let at = text.find("code is ").expect("a code") + "code is ".len();
    text[at..at + 6].to_owned()
}

/// The channels of the deliveries of `user`'s newest notification.
pub(super) async fn newest_channels(hub: &TestHub, user: &User) -> Vec<String> {
    let id = hub.get_as(user, "/api/notifications/", 200).await["results"][0]["id"].clone();
    let d = hub
        .get_as(user, &format!("/api/notifications/{id}/deliveries/"), 200)
        .await;
    let mut channels: Vec<String> = d["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["channel"].as_str().unwrap().to_owned())
        .collect();
    channels.sort();
    channels
}

pub(super) async fn typed_addresses_get_nothing_but_their_code_until_verified(backend: Backend) {
    let smtp = Smtp::start().await;
    let twilio = Twilio::start().await;
    let hub = TestHub::start_with(&backend, |c| {
        c.channels.email.smtp_url = Some(smtp.url());
        twilio.configure(c);
        c.public_url = Some("https://tickets.example.test".into());
        c.register_per_hour = 1000;
        crate::delivery::quick(c);
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;

    // A stranger signs up with someone else's address and number.
    let (status, mallory) = hub
        .post(
            "/api/auth/register/",
            None,
            json!({"username": "mallory", "password": "mallory-password", "display_name": "Mallory says: call 555-0100",
                   "email": "victim@example.test", "phone_number": "+15550009999"}),
        )
        .await;
    assert_eq!(status, 201, "{mallory}");
    assert_eq!(mallory["email_verified_at"], Value::Null, "{mallory}");
    assert_eq!(mallory["phone_verified_at"], Value::Null, "{mallory}");
    let user = hub
        .store
        .user_by_id(tickethub_actors::domain::UserId(
            mallory["id"].as_i64().unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    // Each address gets its code, and only that.
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail.to, vec!["victim@example.test".to_owned()]);
    let text = mail.text();
    let email_code = code_in(&text);
    // The link carries a token of its own, not the code; the mail carries nothing the
    // stranger typed (their display name).
    let token = link_token(&text);
    assert_eq!(token.len(), 32, "{text}");
    assert!(!token.contains(&email_code), "{text}");
    assert!(!text.contains("Mallory"), "{text}");
    let sms = twilio.wait_for(1).await.remove(0);
    assert_eq!(sms.to(), "+15550009999");
    let sms_code = code_in(sms.body());
    assert!(!sms.body().contains("Mallory"), "{}", sms.body());
    hub.send(&admin, &[&user], json!({"channels": ["email", "sms"]}))
        .await;
    assert_eq!(newest_channels(&hub, &user).await, vec!["websocket"]);

    // Something that is not six digits spends nothing; a wrong code spends a try; asking
    // again at once is too soon.
    let (status, body) = hub
        .post(
            "/api/users/me/verify/",
            Some(&hub.token(&user)),
            json!({"channel": "email", "code": "12345x"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("six digits"),
        "{body}"
    );
    let wrong = if email_code == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (status, body) = hub
        .post(
            "/api/users/me/verify/",
            Some(&hub.token(&user)),
            json!({"channel": "email", "code": wrong}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("4 tries left"),
        "{body}"
    );
    let res = hub
        .http
        .post(hub.url("/api/users/me/verify/send/"))
        .bearer_auth(hub.token(&user))
        .json(&json!({"channel": "email"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));

    // The email's link: opening it changes nothing, its button confirms.
    let link = format!("/verify/?token={token}");
    let page = hub.http.get(hub.url(&link)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<form method=\"post\""));
    let me = hub.get_as(&user, "/api/users/me/", 200).await;
    assert_eq!(me["email_verified_at"], Value::Null, "{me}");
    let confirmed = hub
        .http
        .post(hub.url("/verify/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    assert!(confirmed.text().await.unwrap().contains("Confirmed"));
    let me = hub.get_as(&user, "/api/users/me/", 200).await;
    assert!(me["email_verified_at"].is_string(), "{me}");
    // Spent: the same code again is no code.
    let (status, _) = hub
        .post(
            "/api/users/me/verify/",
            Some(&hub.token(&user)),
            json!({"channel": "email", "code": email_code}),
        )
        .await;
    assert_eq!(status, 400);

    // Email now goes; SMS waits for its own code, which the API takes.
    hub.send(&admin, &[&user], json!({"channels": ["email", "sms"]}))
        .await;
    assert_eq!(
        newest_channels(&hub, &user).await,
        vec!["email", "websocket"]
    );
    let verified = hub
        .post_as(
            &user,
            "/api/users/me/verify/",
            json!({"channel": "sms", "code": sms_code}),
            200,
        )
        .await;
    assert!(verified["phone_verified_at"].is_string(), "{verified}");
    hub.send(&admin, &[&user], json!({"channels": ["email", "sms"]}))
        .await;
    assert_eq!(
        newest_channels(&hub, &user).await,
        vec!["email", "sms", "websocket"]
    );
    let trail = hub
        .get_as(
            &admin,
            &format!(
                "/api/admin/audit/?action=address.verified&subject=user:{}",
                user.id.0
            ),
            200,
        )
        .await;
    assert_eq!(trail["count"], 2, "{trail}");

    // A new address of their own waits again; one an admin sets is verified at once.
    let (status, me) = hub
        .call(
            reqwest::Method::PATCH,
            "/api/users/me/",
            Some(&hub.token(&user)),
            Some(json!({"email": "other@example.test"})),
        )
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["email_verified_at"], Value::Null, "{me}");
    let (status, me) = hub
        .call(
            reqwest::Method::PATCH,
            &format!("/api/users/{}/", user.id.0),
            Some(&hub.token(&admin)),
            Some(json!({"phone_number": "+15550008888"})),
        )
        .await;
    assert_eq!(status, 200, "{me}");
    assert!(me["phone_verified_at"].is_string(), "{me}");
    assert_eq!(me["email_verified_at"], Value::Null, "{me}");

    // An address receives at most five codes a day, however many accounts name it, however
    // it is spelled.
    let mut last = Value::Null;
    let spellings = [
        "target@example.test",
        "Target@example.test",
        "TARGET@EXAMPLE.TEST",
        "target@Example.Test",
        "tarGet@example.test",
        "target@example.TEST",
    ];
    for (n, email) in spellings.iter().enumerate() {
        let (status, body) = hub
            .post(
                "/api/auth/register/",
                None,
                json!({"username": format!("spam{n}"), "password": "spam-password",
                       "email": email}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        last = body;
    }
    let to_target = |mails: &[crate::fakes::Mail]| {
        mails
            .iter()
            .filter(|m| m.to.len() == 1 && m.to[0].eq_ignore_ascii_case("target@example.test"))
            .count()
    };
    eventually_ok("five codes reach the address", || async {
        match to_target(&smtp.mails()) {
            5 => Ok(()),
            n => Err(format!("{n}")),
        }
    })
    .await;
    let spam = hub
        .store
        .user_by_id(tickethub_actors::domain::UserId(
            last["id"].as_i64().unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    let res = hub
        .http
        .post(hub.url("/api/users/me/verify/send/"))
        .bearer_auth(hub.token(&spam))
        .json(&json!({"channel": "email"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429, "the sixth account's code was held back");
    assert_eq!(
        db_number(
            &hub.db,
            &format!(
                "SELECT COUNT(*) FROM address_verifications WHERE user_id = {}",
                spam.id.0
            )
        )
        .await,
        0
    );
}

/// Guesses sent at once each spend a try before they are compared: five are compared, the
/// rest find no code, and the right code after them finds none either.
pub(super) async fn guesses_sent_at_once_each_spend_a_try(backend: Backend) {
    let twilio = Twilio::start().await;
    let hub = TestHub::start_with(&backend, |c| twilio.configure(c)).await;
    let (status, me) = hub
        .post(
            "/api/auth/register/",
            None,
            json!({"username": "guesser", "password": "guesser-password", "phone_number": "+15550007777"}),
        )
        .await;
    assert_eq!(status, 201, "{me}");
    let user = hub
        .store
        .user_by_id(tickethub_actors::domain::UserId(me["id"].as_i64().unwrap()))
        .await
        .unwrap()
        .unwrap();
    let code = code_in(twilio.wait_for(1).await[0].body());
    let wrong: Vec<String> = (0..8)
        .map(|n| format!("{:06}", (code.parse::<u32>().unwrap() + 1 + n) % 1_000_000))
        .collect();
    let token = hub.token(&user);
    let answers = futures::future::join_all(wrong.iter().map(|guess| {
        hub.post(
            "/api/users/me/verify/",
            Some(&token),
            json!({"channel": "sms", "code": guess}),
        )
    }))
    .await;
    let compared = answers
        .iter()
        .filter(|(_, b)| {
            b["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("tries left")
        })
        .count();
    let none = answers
        .iter()
        .filter(|(_, b)| {
            b["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("No code is pending")
        })
        .count();
    assert!(
        answers.iter().all(|(status, _)| *status == 400),
        "{answers:?}"
    );
    assert_eq!((compared, none), (5, 3), "{answers:?}");
    let (status, body) = hub
        .post(
            "/api/users/me/verify/",
            Some(&token),
            json!({"channel": "sms", "code": code}),
        )
        .await;
    assert_eq!(status, 400, "the spent code is no code: {body}");
}
