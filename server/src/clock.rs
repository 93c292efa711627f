//! The time the rules run on (deadlines, escalation, roll-call windows). Production reads the
//! system clock; tests use a manual clock and advance it instead of sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Milliseconds since the Unix epoch by the system clock: the one time format stored in the
/// database. Rules use a [`Clock`] instead, so tests can move time.
pub fn system_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Clone)]
pub struct Clock(Arc<Inner>);

struct Inner {
    /// None: the system clock.
    manual: Option<AtomicI64>,
    changed: Notify,
}

impl Clock {
    pub fn system() -> Self {
        Self(Arc::new(Inner {
            manual: None,
            changed: Notify::new(),
        }))
    }

    /// A clock that stands still at `now_ms` until advanced.
    pub fn manual(now_ms: i64) -> Self {
        Self(Arc::new(Inner {
            manual: Some(AtomicI64::new(now_ms)),
            changed: Notify::new(),
        }))
    }

    /// Milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.0.manual {
            Some(now) => now.load(Ordering::SeqCst),
            None => system_ms(),
        }
    }

    /// Moves a manual clock forward and wakes whoever waits on it.
    pub fn advance(&self, by: Duration) {
        let now = self
            .0
            .manual
            .as_ref()
            .expect("only a manual clock can be advanced");
        now.fetch_add(
            i64::try_from(by.as_millis()).unwrap_or(i64::MAX),
            Ordering::SeqCst,
        );
        self.0.changed.notify_waiters();
    }

    /// Returns once the clock reads `at_ms` or later.
    pub async fn sleep_until(&self, at_ms: i64) {
        loop {
            let changed = self.0.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = self.now_ms();
            if now >= at_ms {
                return;
            }
            match self.0.manual {
                Some(_) => changed.await,
                None => {
                    let wait = u64::try_from(at_ms.saturating_sub(now)).unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(wait)).await
                }
            }
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.manual {
            Some(_) => write!(f, "Clock::manual({})", self.now_ms()),
            None => f.write_str("Clock::system"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_advanced() {
        let clock = Clock::manual(1_000);
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(61_000).await }
        });
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(30));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(30));
        tokio::time::timeout(Duration::from_secs(1), sleeper)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(clock.now_ms(), 61_000);
    }
}
