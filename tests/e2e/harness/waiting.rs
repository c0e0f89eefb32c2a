use super::*;

/// Polls `probe` until it answers `Ok`, and returns that; fails after `limit` with `what`
/// and the last `Err` (what the probe saw, to say why).
pub async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let last = match probe().await {
            Ok(found) => return found,
            Err(last) => last,
        };
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`eventually_within`] the [`patience()`].
pub async fn eventually_ok<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    eventually_within(what, patience(), probe).await
}

/// Polls `probe` until it answers `Some`, and returns that; fails after [`patience()`].
pub async fn eventually_some<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_ok(what, || {
        let probe = probe();
        async move { probe.await.ok_or_else(|| "nothing yet".to_owned()) }
    })
    .await
}

/// Polls `cond` until it holds, failing after [`patience()`].
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_some(what, || {
        let cond = cond();
        async move { cond.await.then_some(()) }
    })
    .await
}
