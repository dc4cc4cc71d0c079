//! Log lines about something that can happen at any rate (failed TLS handshakes, evicted
//! idempotent answers): at most one per interval, each saying how many times it happened
//! since the last one, so that the first occurrence shows at once and a flood cannot fill the
//! log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When the next line about one kind of event is due, and how many events it must count.
#[derive(Debug)]
pub(crate) struct LogBudget {
    interval: Duration,
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl LogBudget {
    /// At most one line per `interval`.
    pub(crate) const fn new(interval: Duration) -> Self {
        LogBudget {
            interval,
            last_logged: None,
            unlogged: 0,
        }
    }

    /// Counts `events` more at `now`. When a line is due, returns how many events it reports:
    /// these and every one since the last line.
    pub(crate) fn admit(&mut self, events: u64, now: Instant) -> Option<u64> {
        self.unlogged += events;
        let recent = self
            .last_logged
            .is_some_and(|last| now.saturating_duration_since(last) < self.interval);
        if recent || self.unlogged == 0 {
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// A [`LogBudget`] shared by the threads on which one kind of event happens (TLS handshakes
/// and certificate checks run on any worker), counting events one at a time.
#[derive(Debug)]
pub(crate) struct SharedLogBudget(Mutex<LogBudget>);

impl SharedLogBudget {
    /// At most one line per `interval`.
    pub(crate) const fn new(interval: Duration) -> Self {
        SharedLogBudget(Mutex::new(LogBudget::new(interval)))
    }

    /// Counts one event now; see [`SharedLogBudget::admit_one_at`].
    pub(crate) fn admit_one(&self) -> Option<u64> {
        self.admit_one_at(Instant::now())
    }

    /// Counts one event at `now`. When a line is due for it, returns how many events before
    /// it were not logged.
    pub(crate) fn admit_one_at(&self, now: Instant) -> Option<u64> {
        // A thread that panicked while counting left a count that is still a count.
        let mut budget = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        budget.admit(1, now).map(|events| events - 1)
    }
}
