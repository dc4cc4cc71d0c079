//! The HTTP/1.1 connection loop: what `axum::serve` does (accept, serve each connection on its
//! own task, shut down gracefully), plus a deadline for each request's head. Without one, a
//! client that sends its headers slowly, or never, holds a connection (and a file descriptor)
//! for ever, and enough such clients lock everyone out.
//!
//! hyper has such a deadline, but it arms a timer for every request, which cost GET one
//! dataset 6 % of its CPU. Here a connection only notes, in an atomic, since when it has been
//! waiting for a head (from its accept or its last write until the end of the next head goes
//! by); one sweeper task per server closes the connections that waited too long.
//!
//! The server tells a connection's task to stop (or that its time is up) through the same
//! clock: a flag and the task's waker. A task woken for every read and every answer checks an
//! atomic instead of polling a shutdown channel and a `Notify`, each behind a mutex, at every
//! wake-up (which cost GET one 2 to 4 % of its CPU).
//!
//! [`serve_on_workers`] runs one such loop on each worker thread, and hands them the
//! connections it accepts.

mod workers;

pub use workers::{Handoff, serve_on_workers};

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tower::{Service, ServiceExt};

/// How long a graceful stop waits for the requests in flight before it closes their
/// connections: a client that sent half a request (its head, or part of its body) would
/// otherwise hold the stop for the whole head or body timeout, past what `docker stop` and
/// systemd wait before they kill.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Below this many open files, a server holding a connection for every waiting client runs
/// short of them; start-up warns.
const FEW_OPEN_FILES: u64 = 4096;

/// The process's limit on open files before and after [`raise_open_file_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// The soft limit the process started with.
    pub before: u64,
    /// The soft limit now.
    pub now: u64,
}

/// Raises the process's soft limit on open files to its hard limit, as Go's runtime does for
/// every server. Each connection is a file, and clients that wait for changes hold thousands
/// at once: the usual soft limit (1,024) would refuse connections past about a thousand while
/// the hard limit (often 524,288) allows them. Only the hard limit is the operator's to set.
pub fn raise_open_file_limit() -> io::Result<OpenFileLimit> {
    let (before, _) = rlimit::Resource::NOFILE.get()?;
    let now = rlimit::increase_nofile_limit(u64::MAX)?;
    Ok(OpenFileLimit { before, now })
}

/// [`raise_open_file_limit`], saying what it did: at `info` when it raised the limit, a
/// warning when the limit is still low or could not be read.
pub fn raise_open_file_limit_and_log() {
    match raise_open_file_limit() {
        Ok(limit) if limit.now < FEW_OPEN_FILES => tracing::warn!(
            open_files = limit.now,
            "the open file limit is low: floe can hold about that many connections at once, waiting ones included; raise the hard limit (ulimit -Hn, or LimitNOFILE= for a systemd service)"
        ),
        Ok(limit) if limit.now > limit.before => tracing::info!(
            from = limit.before,
            to = limit.now,
            "open file limit raised to the hard limit"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot read or raise the open file limit"),
    }
}

/// Serves `listener` until `shutdown` completes, then stops accepting, lets every request in
/// flight finish (closing, after `SHUTDOWN_GRACE`, the connections whose request has not),
/// and returns once every connection is closed. A connection that waits more
/// than `head_timeout` for a request's head (the request line and headers) is closed.
/// `service_for` makes the service of one connection from the address the listener reported
/// for it (a plain connection needs nothing from it; a TLS one carries the client's identity);
/// it is dropped on return, and with it whatever it holds (the store's handles, which the
/// writer waits for).
pub async fn serve<L, S>(
    mut listener: L,
    head_timeout: Duration,
    service_for: impl Fn(L::Addr) -> S,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener,
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let deadlines = Arc::new(HeadDeadlines::new(head_timeout));
    let sweeper = tokio::spawn(Arc::clone(&deadlines).sweep());
    // Each connection holds an `open` receiver until it is closed, so that `closed()` tells
    // when the last one is gone.
    let (open, _) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (io, address) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let service = service_for(address)
            .map_request(|request: hyper::Request<Incoming>| request.map(Body::new));
        let (io, clock) = deadlines.watch(io);
        let still_open = open.subscribe();
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
            tokio::pin!(connection);
            let mut stopping = false;
            let served = std::future::poll_fn(|cx| {
                // Registered before the flags are read: a signal set after the read wakes
                // this task again.
                clock.task.register(cx.waker());
                let signals = clock.signals.load(Ordering::Acquire);
                if signals & EXPIRED != 0 {
                    if !stopping {
                        tracing::debug!(
                            ?head_timeout,
                            "closing a connection that sent no request in time"
                        );
                    }
                    return Poll::Ready(Ok(()));
                }
                if signals & STOP != 0 && !stopping {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
                connection.as_mut().poll(cx)
            })
            .await;
            if let Err(error) = served {
                // A client that went away: routine, so not above debug.
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(still_open);
        });
    }
    drop(listener);
    drop(service_for);
    deadlines.signal_all(STOP);
    if tokio::time::timeout(SHUTDOWN_GRACE, open.closed())
        .await
        .is_err()
    {
        tracing::info!(
            grace = ?SHUTDOWN_GRACE,
            "closing the connections whose request did not finish within the stop's grace period"
        );
        deadlines.signal_all(EXPIRED);
        open.closed().await;
    }
    sweeper.abort();
}

/// The head clocks of a server's connections, and the timeout they are held to.
struct HeadDeadlines {
    timeout: Duration,
    epoch: Instant,
    clocks: Mutex<Vec<Weak<HeadClock>>>,
}

/// One connection's clock, and the signals the server sends the connection's task.
struct HeadClock {
    /// Milliseconds after [`HeadDeadlines::epoch`] (plus one) since which the connection has
    /// been waiting for a request head; 0 while it is not (a head arrived and its answer has
    /// not been written yet, however long the request is held).
    waiting_since: AtomicU64,
    /// [`STOP`] and [`EXPIRED`], once set never cleared.
    signals: AtomicU8,
    /// The connection's task, woken when a signal is set.
    task: AtomicWaker,
}

/// The server is shutting down: finish the request in flight, then close.
const STOP: u8 = 1;
/// The connection waited longer than the timeout for a request head: close now.
const EXPIRED: u8 = 2;

impl HeadClock {
    fn new(waiting_since: u64) -> Self {
        HeadClock {
            waiting_since: AtomicU64::new(waiting_since),
            signals: AtomicU8::new(0),
            task: AtomicWaker::new(),
        }
    }

    fn signal(&self, signal: u8) {
        self.signals.fetch_or(signal, Ordering::Release);
        self.task.wake();
    }
}

impl HeadDeadlines {
    fn new(timeout: Duration) -> Self {
        HeadDeadlines {
            timeout,
            epoch: Instant::now(),
            clocks: Mutex::new(Vec::new()),
        }
    }

    fn now(epoch: Instant) -> u64 {
        u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Starts the clock of a new connection (it owes a request head from now on).
    fn watch<T>(&self, io: T) -> (HeadTimed<T>, Arc<HeadClock>) {
        let clock = Arc::new(HeadClock::new(Self::now(self.epoch)));
        self.clocks
            .lock()
            .expect("the clock list is never poisoned")
            .push(Arc::downgrade(&clock));
        let io = HeadTimed {
            inner: io,
            clock: Arc::clone(&clock),
            epoch: self.epoch,
            tail: [0; 3],
        };
        (io, clock)
    }

    /// Sends every open connection `signal`.
    fn signal_all(&self, signal: u8) {
        let clocks = self
            .clocks
            .lock()
            .expect("the clock list is never poisoned");
        for clock in clocks.iter().filter_map(Weak::upgrade) {
            clock.signal(signal);
        }
    }

    /// Every so often, closes the connections that have waited too long, and forgets those
    /// that are gone. Runs until aborted.
    async fn sweep(self: Arc<Self>) {
        let period = (self.timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let timeout = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = Self::now(self.epoch);
            let mut clocks = self
                .clocks
                .lock()
                .expect("the clock list is never poisoned");
            clocks.retain(|clock| {
                let Some(clock) = clock.upgrade() else {
                    return false;
                };
                let since = clock.waiting_since.load(Ordering::Relaxed);
                if since != 0 && now.saturating_sub(since) >= timeout {
                    clock.signal(EXPIRED);
                }
                true
            });
        }
    }
}

/// A connection's I/O, noting on its clock when it starts waiting for a request head (at
/// each write: an answer, or part of one, went out) and when a head has arrived (the blank
/// line that ends it was read).
struct HeadTimed<T> {
    inner: T,
    clock: Arc<HeadClock>,
    epoch: Instant,
    /// The last three bytes read, for a blank line split across two reads.
    tail: [u8; 3],
}

impl<T> HeadTimed<T> {
    /// Whether `read` (the bytes just read) completes a request head.
    fn ends_a_head(&mut self, read: &[u8]) -> bool {
        const END: &[u8] = b"\r\n\r\n";
        // Built once: `memmem::find` would build a searcher for every read.
        static FINDER: LazyLock<memchr::memmem::Finder<'static>> =
            LazyLock::new(|| memchr::memmem::Finder::new(END));
        let mut straddling = [0u8; 6];
        straddling[..3].copy_from_slice(&self.tail);
        let head_of_read = read.len().min(3);
        straddling[3..3 + head_of_read].copy_from_slice(&read[..head_of_read]);
        let found = straddling[..3 + head_of_read]
            .windows(END.len())
            .any(|window| window == END)
            || FINDER.find(read).is_some();
        for &byte in &read[read.len().saturating_sub(3)..] {
            self.tail = [self.tail[1], self.tail[2], byte];
        }
        found
    }

    /// Passes a write's outcome on; if bytes went out, the next request head is owed from now.
    fn noting_writes(&self, polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(written)) = polled
            && written > 0
        {
            let now = HeadDeadlines::now(self.epoch);
            self.clock.waiting_since.store(now, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadTimed<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && this.clock.waiting_since.load(Ordering::Relaxed) != 0
            && this.ends_a_head(&buf.filled()[before..])
        {
            this.clock.waiting_since.store(0, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadTimed<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.noting_writes(polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.noting_writes(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed() -> HeadTimed<()> {
        HeadTimed {
            inner: (),
            clock: Arc::new(HeadClock::new(1)),
            epoch: Instant::now(),
            tail: [0; 3],
        }
    }

    #[test]
    fn a_head_ends_at_its_blank_line_wherever_the_reads_split_it() {
        let head = b"GET /v1/version HTTP/1.1\r\nHost: floe\r\n\r\n";
        for split in 0..=head.len() {
            let mut io = timed();
            let (first, second) = head.split_at(split);
            let ended = io.ends_a_head(first) || io.ends_a_head(second);
            assert!(ended, "split at {split}");
        }
        for byte_by_byte in [true, false] {
            let mut io = timed();
            let unfinished = b"GET / HTTP/1.1\r\nHost: floe\r\n";
            let ended = if byte_by_byte {
                unfinished.iter().any(|byte| io.ends_a_head(&[*byte]))
            } else {
                io.ends_a_head(unfinished)
            };
            assert!(!ended, "no blank line yet");
        }
    }
}
