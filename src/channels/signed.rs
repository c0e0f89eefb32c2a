//! Tokens the hub signs for one notification of one person until a moment (a push's
//! Acknowledge button, a page's email reply address): their claims, written
//! `<notification><sep><user><sep><expiry, unix seconds>`, and the check of a signature made
//! over them.

/// The claims of a token.
pub fn claims(
    notification: i64,
    user: i64,
    expires: chrono::DateTime<chrono::Utc>,
    sep: char,
) -> String {
    format!("{notification}{sep}{user}{sep}{}", expires.timestamp())
}

/// The notification and user `claims` name, if `given` is `expected` (the signature this hub
/// makes over them, compared in constant time) and they have not expired at `now`.
pub fn check(
    claims: &str,
    given: &str,
    expected: &str,
    sep: char,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(i64, i64), &'static str> {
    let same = expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err("not signed by this hub");
    }
    let mut parts = claims.split(sep).map(str::parse::<i64>);
    let (Some(Ok(notification)), Some(Ok(user)), Some(Ok(expires)), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a token");
    };
    if now.timestamp() >= expires {
        return Err("expired");
    }
    Ok((notification, user))
}
