//! What stands between anyone and the password check: at most so many Argon2 checks at once,
//! each in working memory of its own that is reused from check to check (each takes about
//! 19 MiB; 150 at once once took the server to 3 GB), and growing lockouts
//! after failed logins per username and per address. Only failures count: successful logins
//! are never slowed, so a thousand phones behind one office's address log in as fast as ever.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::settings::Limits;

/// Longest lockout, however many failures.
const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// How long to wait for a free password check before answering 429.
const CHECK_WAIT: Duration = Duration::from_secs(1);
/// How long without password checks before their working memory is freed.
const IDLE_RELEASE: Duration = Duration::from_secs(2);
/// Failures are forgotten this long after the last one.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Most usernames and addresses remembered; beyond, the ones not locked are forgotten first.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Username(String),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// A lockout that has just begun, for the audit trail.
#[derive(Debug, Clone)]
pub struct Lockout {
    pub of: String,
    pub secs: u64,
}

pub struct LoginThrottle {
    checks: Arc<Semaphore>,
    permits: usize,
    generation: Arc<AtomicU64>,
    /// Argon2 working memory of the checks not running now: never more buffers than
    /// permits, none once the server has been quiet for `IDLE_RELEASE`.
    memory: Arc<Mutex<Vec<Vec<argon2::Block>>>>,
    failures: Mutex<HashMap<Key, Failures>>,
    per_username: u32,
    per_address: u32,
    lockout: Duration,
}

impl LoginThrottle {
    pub fn new(limits: &Limits) -> Self {
        Self {
            checks: Arc::new(Semaphore::new(limits.concurrent_password_checks.max(1))),
            permits: limits.concurrent_password_checks.max(1),
            generation: Arc::default(),
            memory: Arc::default(),
            failures: Mutex::default(),
            per_username: limits.failed_logins_per_username.max(1),
            per_address: limits.failed_logins_per_address.max(1),
            lockout: Duration::from_secs(limits.lockout_secs.max(1)),
        }
    }

    fn keys(username: &str, address: Option<IpAddr>) -> impl Iterator<Item = Key> {
        std::iter::once(Key::Username(username.to_owned())).chain(address.map(Key::Address))
    }

    /// How long until `username` (or `address`) may try again, if it is locked out now.
    pub fn locked(&self, username: &str, address: Option<IpAddr>) -> Option<Duration> {
        let failures = lock(&self.failures);
        let now = Instant::now();
        Self::keys(username, address)
            .filter_map(|key| failures.get(&key)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    /// A permit to run one password check, or None if too many run and none frees up soon.
    pub async fn check(&self) -> Option<PasswordCheck> {
        let permit = tokio::time::timeout(CHECK_WAIT, Arc::clone(&self.checks).acquire_owned())
            .await
            .ok()?
            .ok()?;
        let memory = lock(&self.memory).pop().unwrap_or_default();
        Some(PasswordCheck {
            _permit: permit,
            checks: Arc::clone(&self.checks),
            permits: self.permits,
            generation: Arc::clone(&self.generation),
            memory,
            pool: Arc::clone(&self.memory),
        })
    }

    /// Counts a failed login; returns the lockouts it starts.
    pub fn failed(&self, username: &str, address: Option<IpAddr>) -> Vec<Lockout> {
        let mut failures = lock(&self.failures);
        let now = Instant::now();
        if failures.len() >= MAX_ENTRIES {
            failures.retain(|_, f| {
                f.locked_until.is_some_and(|until| until > now)
                    || now.duration_since(f.last) < FORGET_AFTER
            });
            if failures.len() >= MAX_ENTRIES {
                failures.retain(|_, f| f.locked_until.is_some_and(|until| until > now));
            }
        }
        let mut started = Vec::new();
        for key in Self::keys(username, address) {
            let threshold = match key {
                Key::Username(_) => self.per_username,
                Key::Address(_) => self.per_address,
            };
            let entry = failures.entry(key.clone()).or_insert(Failures {
                count: 0,
                last: now,
                locked_until: None,
            });
            if now.duration_since(entry.last) >= FORGET_AFTER {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
            if entry.count >= threshold {
                // Doubling with each failure past the threshold.
                let doublings = (entry.count - threshold).min(16);
                let lockout = self.lockout.saturating_mul(1 << doublings).min(MAX_LOCKOUT);
                entry.locked_until = Some(now + lockout);
                started.push(Lockout {
                    of: match &key {
                        Key::Username(name) => format!("username {name}"),
                        Key::Address(address) => format!("address {address}"),
                    },
                    secs: lockout.as_secs(),
                });
            }
        }
        started
    }

    /// A successful login clears its username's failures (not its address's).
    pub fn succeeded(&self, username: &str) {
        let mut failures = lock(&self.failures);
        failures.remove(&Key::Username(username.to_owned()));
    }
}

/// One permitted password check, with its working memory; both go back when it is dropped.
pub struct PasswordCheck {
    _permit: OwnedSemaphorePermit,
    checks: Arc<Semaphore>,
    permits: usize,
    /// Bumped by each check that ends with none running; a release waits for quiet.
    generation: Arc<AtomicU64>,
    memory: Vec<argon2::Block>,
    pool: Arc<Mutex<Vec<Vec<argon2::Block>>>>,
}

impl PasswordCheck {
    /// Checks `password` against a stored hash (blocking: run it off the async threads).
    pub fn verify(mut self, password: &str, hash: &str) -> bool {
        crate::units::verify_password(password, hash, &mut self.memory)
    }
}

impl Drop for PasswordCheck {
    /// During a storm of logins the buffers are reused: allocating and freeing 19 MiB for
    /// each check fragmented the heap past 1 GB. Once no check has run for `IDLE_RELEASE`,
    /// they are freed, so a quiet server holds none.
    fn drop(&mut self) {
        lock(&self.pool).push(std::mem::take(&mut self.memory));
        let (Ok(runtime), true) = (
            tokio::runtime::Handle::try_current(),
            self.permits - self.checks.available_permits() == 1,
        ) else {
            return;
        };
        let (checks, permits, pool) = (
            Arc::clone(&self.checks),
            self.permits,
            Arc::clone(&self.pool),
        );
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let latest = Arc::clone(&self.generation);
        runtime.spawn(async move {
            tokio::time::sleep(IDLE_RELEASE).await;
            if checks.available_permits() == permits && latest.load(Ordering::Relaxed) == generation
            {
                lock(&pool).clear();
            }
        });
    }
}

/// The data behind these locks stays consistent whatever panicked while holding them.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failures_lock_out_for_longer_each_time() {
        let limits = Limits {
            failed_logins_per_username: 3,
            failed_logins_per_address: 100,
            lockout_secs: 30,
            ..Limits::default()
        };
        let throttle = LoginThrottle::new(&limits);
        let address = Some(IpAddr::from([127, 0, 0, 1]));
        assert!(throttle.failed("wang", address).is_empty());
        assert!(throttle.failed("wang", address).is_empty());
        assert_eq!(throttle.failed("wang", address)[0].secs, 30);
        assert!(throttle.locked("wang", address).is_some());
        assert!(
            throttle.locked("li", address).is_none(),
            "others are not locked"
        );
        assert_eq!(throttle.failed("wang", address)[0].secs, 60);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(throttle.locked("wang", address).is_none());
        throttle.succeeded("wang");
        assert!(
            throttle.failed("wang", address).is_empty(),
            "counted afresh"
        );
    }

    #[tokio::test]
    async fn checks_reuse_their_memory_and_still_tell_passwords_apart() {
        let limits = Limits {
            concurrent_password_checks: 2,
            ..Limits::default()
        };
        let throttle = LoginThrottle::new(&limits);
        let hash = crate::units::hash_password("正确的密码").unwrap();
        for _ in 0..3 {
            let (first, second) = (
                throttle.check().await.unwrap(),
                throttle.check().await.unwrap(),
            );
            assert!(throttle.check().await.is_none(), "two at most");
            assert!(first.verify("正确的密码", &hash));
            assert!(!second.verify("wrong", &hash));
        }
        assert_eq!(
            lock(&throttle.memory).len(),
            2,
            "one buffer per permit, reused"
        );
        tokio::time::sleep(IDLE_RELEASE + Duration::from_millis(200)).await;
        assert_eq!(lock(&throttle.memory).len(), 0, "freed once quiet");
        assert!(!throttle.check().await.unwrap().verify("x", "not a hash"));
    }
}
