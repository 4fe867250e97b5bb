//! Failed operator authentication, per client address (SPEC §8): every
//! failure is logged and answered late, and beyond a few a second the
//! address gets 429 without its token being looked at, so tokens cannot be
//! guessed at speed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::error::ApiError;

/// Failures an address may have within [`WINDOW`] before it is refused.
const LIMIT: u32 = 5;
const WINDOW: Duration = Duration::from_secs(1);
/// How late a failure is answered.
const DELAY: Duration = Duration::from_millis(250);
/// Addresses remembered before stale windows are swept.
const SWEEP_AT: usize = 4_096;

struct Window {
    start: Instant,
    failures: u32,
}

#[derive(Default)]
pub struct Throttle {
    windows: Mutex<HashMap<IpAddr, Window>>,
}

impl Throttle {
    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Window>> {
        // Critical sections are single map operations; a poisoned map is
        // still consistent.
        match self.windows.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// 429 while `peer` is over the limit; checked before any token is.
    pub fn check(&self, peer: IpAddr) -> Result<(), ApiError> {
        let map = self.lock();
        match map.get(&peer) {
            Some(w) if w.start.elapsed() < WINDOW && w.failures >= LIMIT => Err(limited()),
            _ => Ok(()),
        }
    }

    /// Records a failed attempt from `peer` at `route` (never the token),
    /// waits, and returns the answer: 401, or 429 once over the limit.
    pub async fn failed(&self, peer: IpAddr, route: &str, unauthorized: ApiError) -> ApiError {
        let failures = self.count(peer);
        tracing::warn!(client = %peer, route, failures, "failed authentication");
        tokio::time::sleep(DELAY).await;
        if failures > LIMIT {
            limited()
        } else {
            unauthorized
        }
    }

    fn count(&self, peer: IpAddr) -> u32 {
        let mut map = self.lock();
        if map.len() >= SWEEP_AT {
            map.retain(|_, w| w.start.elapsed() < WINDOW);
        }
        let now = Instant::now();
        let w = map.entry(peer).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now.duration_since(w.start) >= WINDOW {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures += 1;
        w.failures
    }
}

fn limited() -> ApiError {
    ApiError::TooManyRequests(
        "too many failed sign-in attempts from this address; wait a second".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_after_a_few_failures_per_address() {
        let t = Throttle::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.1".parse().unwrap();
        for n in 1..=LIMIT {
            assert!(t.check(ip).is_ok());
            assert_eq!(t.count(ip), n);
        }
        assert!(matches!(t.check(ip), Err(ApiError::TooManyRequests(_))));
        assert!(t.check(other).is_ok(), "per address");
    }
}
