//! The group-commit task: one writer owns all writes from documents and commits whatever is
//! queued (up to a bound) in a single transaction. A caller learns the outcome of its own
//! work; no failure is swallowed, and one bad job does not fail its neighbours.

use tokio::sync::{mpsc, oneshot};

use super::{CommitError, Handoff, Outcome, Work, apply};
use crate::audit::{self, AuditKey};
use crate::clock::Clock;
use crate::db::{Backend, Pool};
use zhiban_records::Intervals;

/// Most jobs gathered into one transaction; bounds the time one commit holds the lock.
const MAX_JOBS_PER_COMMIT: usize = 1024;

type Done = oneshot::Sender<Result<Outcome, CommitError>>;

enum Job {
    Work { work: Work, done: Option<Done> },
    Stop(oneshot::Sender<()>),
}

/// The handle documents commit through; cheap to clone.
#[derive(Clone)]
pub struct Committer {
    jobs: mpsc::Sender<Job>,
}

impl Committer {
    pub fn spawn(
        pool: Pool,
        backend: Backend,
        clock: Clock,
        (intervals, audit_key): (Intervals, AuditKey),
        handoff: Handoff,
    ) -> (Committer, tokio::task::JoinHandle<()>) {
        let (jobs, receiver) = mpsc::channel(4096);
        let writer = Writer {
            pool,
            backend,
            clock,
            intervals,
            audit_key,
            handoff,
        };
        (Committer { jobs }, tokio::spawn(writer.run(receiver)))
    }

    /// Returns once `work` is committed, or with the error that prevented it.
    pub async fn commit(&self, work: Work) -> Result<Outcome, CommitError> {
        self.enqueue(work)
            .await?
            .await
            .map_err(|_| CommitError::Stopped)?
    }

    /// Queues `works` in this order (the writer groups them into as few transactions as it
    /// can) and returns once all are committed: for tools and benchmarks that produce many
    /// changes at once.
    pub async fn commit_all(&self, works: Vec<Work>) -> Result<Vec<Outcome>, CommitError> {
        let mut pending = Vec::with_capacity(works.len());
        for work in works {
            pending.push(self.enqueue(work).await?);
        }
        let mut outcomes = Vec::with_capacity(pending.len());
        for outcome in pending {
            outcomes.push(outcome.await.map_err(|_| CommitError::Stopped)??);
        }
        Ok(outcomes)
    }

    async fn enqueue(
        &self,
        work: Work,
    ) -> Result<oneshot::Receiver<Result<Outcome, CommitError>>, CommitError> {
        let (done, outcome) = oneshot::channel();
        self.jobs
            .send(Job::Work {
                work,
                done: Some(done),
            })
            .await
            .map_err(|_| CommitError::Stopped)?;
        Ok(outcome)
    }

    /// For audit rows that must not be lost (refusals, classified reads): waits for room in
    /// the queue, not for the commit. A flood of refusals thus slows down the actor that
    /// notes them, and through its bounded queue the flooding socket, rather than losing
    /// rows. A failed write is retried with backoff; rows that still cannot be written go to
    /// the log whole, at error level.
    pub async fn record(&self, entries: Vec<audit::Entry>) {
        let mut outcome = match self.enqueue(Work::Audit(entries.clone())).await {
            Ok(outcome) => outcome,
            Err(_) => return lost(&entries, "the writer has stopped"),
        };
        let committer = self.clone();
        tokio::spawn(async move {
            for attempt in 0.. {
                let error = match outcome.await {
                    Ok(Ok(_)) => return,
                    Ok(Err(error)) => error.to_string(),
                    Err(_) => "the writer has stopped".to_owned(),
                };
                if attempt == AUDIT_ATTEMPTS {
                    return lost(&entries, &error);
                }
                tracing::warn!(%error, attempt, "audit rows not written yet; retrying");
                tokio::time::sleep(retry_delay(attempt)).await;
                outcome = match committer.enqueue(Work::Audit(entries.clone())).await {
                    Ok(outcome) => outcome,
                    Err(_) => return lost(&entries, "the writer has stopped"),
                };
            }
        });
    }

    /// For work whose loss costs only efficiency (sync states): failures are logged.
    pub fn submit(&self, work: Work) {
        if let Err(error) = self.jobs.try_send(Job::Work { work, done: None }) {
            tracing::warn!(%error, "commit queue full; background write dropped");
        }
    }

    /// Lets queued work finish, then stops the writer.
    pub async fn stop(&self) {
        let (done, stopped) = oneshot::channel();
        if self.jobs.send(Job::Stop(done)).await.is_ok() {
            let _ = stopped.await;
        }
    }
}

struct Writer {
    pool: Pool,
    backend: Backend,
    clock: Clock,
    /// The deployment's reporting intervals, for the deadlines the rules set.
    intervals: Intervals,
    audit_key: AuditKey,
    handoff: Handoff,
}

impl Writer {
    async fn run(self, mut jobs: mpsc::Receiver<Job>) {
        let mut batch: Vec<(Work, Option<Done>)> = Vec::new();
        loop {
            let Some(first) = jobs.recv().await else {
                return;
            };
            let mut stop = None;
            match first {
                Job::Work { work, done } => batch.push((work, done)),
                Job::Stop(done) => stop = Some(done),
            }
            while stop.is_none() && batch.len() < MAX_JOBS_PER_COMMIT {
                match jobs.try_recv() {
                    Ok(Job::Work { work, done }) => batch.push((work, done)),
                    Ok(Job::Stop(done)) => stop = Some(done),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.commit_batch(&mut batch).await;
            }
            if let Some(done) = stop {
                let _ = done.send(());
                return;
            }
        }
    }

    async fn commit_batch(&self, batch: &mut Vec<(Work, Option<Done>)>) {
        let works: Vec<&Work> = batch.iter().map(|(work, _)| work).collect();
        match apply(
            &self.pool,
            self.backend,
            &works,
            self.clock.now_ms(),
            (self.intervals, &self.audit_key),
        )
        .await
        {
            Ok((outcomes, raised)) => {
                self.handoff.hand_over(raised);
                for ((_, done), outcome) in batch.drain(..).zip(outcomes) {
                    if let Some(done) = done {
                        let _ = done.send(Ok(outcome));
                    }
                }
            }
            Err(error) if batch.len() == 1 => {
                let (work, done) = batch.pop().expect("one job");
                report(&work, done, error);
            }
            Err(error) => {
                // One bad job must not fail its neighbours: retry each on its own.
                tracing::warn!(%error, jobs = batch.len(), "group commit failed; retrying jobs one by one");
                for (work, done) in batch.drain(..) {
                    match apply(
                        &self.pool,
                        self.backend,
                        &[&work],
                        self.clock.now_ms(),
                        (self.intervals, &self.audit_key),
                    )
                    .await
                    {
                        Ok((mut outcomes, raised)) => {
                            self.handoff.hand_over(raised);
                            if let Some(done) = done {
                                let _ = done.send(Ok(outcomes.pop().unwrap_or_default()));
                            }
                        }
                        Err(error) => report(&work, done, error),
                    }
                }
            }
        }
    }
}

fn report(work: &Work, done: Option<Done>, error: sqlx::Error) {
    let error = CommitError::from(error);
    match done {
        Some(done) => {
            let _ = done.send(Err(error));
        }
        None => {
            let what = match work {
                Work::Document(_) | Work::Rederive(_) => "document",
                Work::SyncState { .. } => "sync state",
                Work::Audit(_) => "audit rows",
            };
            tracing::warn!(%error, what, "background write failed");
        }
    }
}

/// How often audit rows are tried again (the delays add up to about 20 s).
const AUDIT_ATTEMPTS: u32 = 8;

/// The last resort for audit rows the database would not take: the log keeps them.
fn lost(entries: &[audit::Entry], error: &str) {
    tracing::error!(%error, rows = ?entries, "audit rows could not be written");
}

/// Delay before retrying a failed commit: doubling from 50 ms, at most 5 s.
pub fn retry_delay(attempt: u32) -> std::time::Duration {
    std::time::Duration::from_millis(50u64.saturating_mul(1 << attempt.min(7)))
        .min(std::time::Duration::from_secs(5))
}
