//! Waiting for change instead of polling: a GET of a list that carries `If-None-Match` with
//! the list's current ETag and `Prefer: wait=N` (RFC 7240) is held until the list changes or
//! N seconds pass; then it is answered as usual (200 with the new list, or 304).
//!
//! A held request is a parked future on a `watch` channel: it costs no CPU until the store (or
//! the cluster state) publishes a change, and one change wakes every waiter at once. When the
//! server stops, [`Waits::release_all`] answers them all.

use std::time::Duration;

use axum::http::HeaderMap;
use tokio::sync::watch;
use tokio::time::Instant;

use super::conditional::Conditions;
use crate::model::precondition::{ResourceVersion, Verdict};

/// The `wait` preference of a `Prefer` header, in seconds. Preferences that do not parse are
/// ignored, as RFC 7240 asks.
pub fn preferred_wait(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|preference| {
            let preference = preference.split(';').next()?.trim();
            let (name, value) = preference.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("wait") {
                return None;
            }
            value.trim().trim_matches('"').parse::<u64>().ok()
        })
        .next()
        .map(Duration::from_secs)
}

/// The server's held requests: how long one may wait, and the signal that releases them all
/// when the server stops. A held request is a request in flight, and a graceful stop waits for
/// those; without the release, stopping would take as long as the longest wait (up to
/// `--max-wait`, past a service manager's stop timeout).
#[derive(Clone)]
pub struct Waits {
    max_wait: Duration,
    stopping: watch::Sender<bool>,
}

impl Waits {
    /// Waits of at most `max_wait`.
    pub fn new(max_wait: Duration) -> Self {
        Waits {
            max_wait,
            stopping: watch::Sender::new(false),
        }
    }

    /// Answers every held request now (each as usual: 304 while its list is unchanged), and
    /// any that asks to wait from now on at once.
    pub fn release_all(&self) {
        self.stopping.send_replace(true);
    }

    /// Holds the request while the client already has the current version of the list (its
    /// `If-None-Match` matches `current_etag()`), until a change published on the channel
    /// `subscribe` returns alters the ETag, the wait it asked for (at most `max_wait`) is
    /// over, or the server stops. Returns at once when the request does not ask to wait.
    pub async fn hold_while_unchanged(
        &self,
        conditions: &Conditions,
        subscribe: impl FnOnce() -> watch::Receiver<u64>,
        current_etag: impl Fn() -> String,
    ) {
        let Some(wait) = conditions.wait.map(|wait| wait.min(self.max_wait)) else {
            return;
        };
        let validators = &conditions.precondition.validators;
        // `None`: a wait too long for its end to be represented (a `--max-wait` near 2^64
        // seconds) lasts until a change or the stop; adding it would panic the request.
        let deadline = Instant::now().checked_add(wait);
        let mut stopping = self.stopping.subscribe();
        if *stopping.borrow_and_update() {
            return;
        }
        // Subscribed only now: most reads do not wait, and a subscription is shared state.
        let mut changes = subscribe();
        loop {
            // Mark the current version as seen *before* reading the ETag, so that a change
            // published in between still wakes us.
            changes.borrow_and_update();
            let etag = current_etag();
            let version = ResourceVersion::strong(&etag, None);
            if validators.evaluate(Some(version), true) != Verdict::NotModified {
                return;
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The publisher is gone (shutting down): answer now.
                        return;
                    }
                }
                _ = stopping.changed() => return,
                () = until(deadline) => return,
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditional::IfMatchPolicy;
    use axum::http::HeaderValue;

    fn prefer(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("prefer", HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn wait_preferences() {
        let seconds = |n| Some(Duration::from_secs(n));
        assert_eq!(preferred_wait(&prefer("wait=10")), seconds(10));
        assert_eq!(preferred_wait(&prefer("respond-async, wait=5")), seconds(5));
        assert_eq!(preferred_wait(&prefer("wait=\"7\"; x=y")), seconds(7));
        assert_eq!(preferred_wait(&prefer("wait=soon")), None);
        assert_eq!(preferred_wait(&prefer("return=minimal")), None);
        assert_eq!(preferred_wait(&HeaderMap::new()), None);
    }

    #[test]
    fn a_wait_is_asked_for_only_with_an_if_none_match() {
        let asked = |headers: &[(&'static str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.append(
                    axum::http::HeaderName::from_static(name),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            Conditions::from_headers(&map, &axum::http::Method::GET, IfMatchPolicy::Optional)
                .unwrap()
                .wait
        };
        let etag = ("if-none-match", "\"abc\"");
        assert_eq!(
            asked(&[etag, ("prefer", "wait=10")]),
            Some(Duration::from_secs(10))
        );
        assert_eq!(asked(&[("prefer", "wait=10")]), None);
        assert_eq!(asked(&[etag]), None);
    }
}
