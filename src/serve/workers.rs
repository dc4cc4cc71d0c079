//! Connections spread over worker threads, each with its own single-threaded tokio runtime:
//! one task accepts, and hands each connection in turn to the next worker, which serves it
//! for its whole life (the design of actix-web's server).
//!
//! Why not one runtime whose threads share every task: there, a connection's task woken by
//! the kernel may run on either thread, and an idle thread is woken to steal it, which costs a
//! futex wake-up and the task's data moving between caches several times per request. Side by
//! side (BENCHMARKS.md, item 24), the same axum server answered about 10 % more small GETs and
//! 5 % more lists per second, on less CPU each, once every connection stayed on one thread.
//!
//! What is given up is stealing: while a request keeps its thread busy, that thread's other
//! connections wait, where another thread could have taken them. Requests that wait (for the
//! writer, for a change) hold no thread, and Argon2 at login runs on the blocking pool. What
//! does compute in place: the first read of the dataset list after a change renders it (16 MB
//! in 7 to 45 ms at 100,000 datasets, measured), a package list is rendered per request, a
//! large body is parsed and checked, and a TLS handshake. Each holds its worker's other
//! connections about as long as it runs.

use std::any::Any;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tower::Service;

use crate::log_budget::SharedLogBudget;

/// The listener of one worker: the connections the accepting task handed it.
pub struct Handoff {
    connections: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
    local: SocketAddr,
}

impl Listener for Handoff {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Some((stream, remote)) = self.connections.recv().await else {
                // The server is stopping: the worker's own stop signal ends its accept loop.
                return std::future::pending().await;
            };
            // Registers the connection with this worker's runtime.
            match TcpStream::from_std(stream) {
                Ok(stream) => return (stream, remote),
                Err(error) => tracing::warn!(%remote, %error, "a connection could not be served"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// How a worker thread's serving ended, sent before its runtime is dropped.
struct Exit {
    index: usize,
    /// What it panicked with, if it did.
    panic: Option<String>,
}

/// Serves `listener` on `workers` threads until `shutdown` completes or a worker dies. Then
/// calls `on_stop`, stops every worker (see [`super::serve`] for what a stop waits for) and
/// returns once each has ended and dropped its runtime, with every task, every clone of the
/// service and whatever they held. `listener_for` makes a worker's listener from its
/// [`Handoff`] (a TLS listener does the handshakes on the worker); `service_for` and
/// `head_timeout` are [`super::serve`]'s.
pub async fn serve_on_workers<L, S, F>(
    listener: TcpListener,
    workers: NonZeroUsize,
    head_timeout: Duration,
    listener_for: impl Fn(Handoff) -> L + Clone + Send + 'static,
    service_for: F,
    shutdown: impl Future<Output = ()>,
    on_stop: impl FnOnce(),
) -> io::Result<()>
where
    L: Listener,
    F: Fn(L::Addr) -> S + Clone + Send + 'static,
    S: Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let local = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let (exit, mut exits) = mpsc::unbounded_channel();
    let mut handoffs = Vec::with_capacity(workers.get());
    let mut started = Ok(());
    for index in 0..workers.get() {
        // Unbounded: what waits in it are connections already accepted, which the open-file
        // limit bounds; a bounded queue would hold every worker up behind one busy one.
        let (handoff, connections) = mpsc::unbounded_channel();
        let (ready, runtime_built) = oneshot::channel();
        let listener_for = listener_for.clone();
        let service_for = service_for.clone();
        let mut stopped = stopped.clone();
        let exit = exit.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("floe-worker-{index}"))
            .spawn(move || {
                // Built and dropped on this thread: a runtime may not be dropped on another
                // runtime's thread.
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                let served = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    runtime.block_on(async move {
                        let listener = listener_for(Handoff { connections, local });
                        let shutdown = async move {
                            // An error means the sender is gone: stop as well.
                            let _ = stopped.wait_for(|stop| *stop).await;
                        };
                        super::serve(listener, head_timeout, service_for, shutdown).await;
                    })
                }));
                // Said before the runtime is dropped, which waits for its blocking jobs: the
                // accepting task stops handing this worker connections at once.
                let panic = served.err().map(|payload| panic_message(payload.as_ref()));
                let _ = exit.send(Exit { index, panic });
                drop(runtime);
                // `exit` is dropped last: once every worker's is, all runtimes are gone.
            });
        started = match spawned {
            Ok(_) => match runtime_built.await {
                Ok(built) => built,
                Err(_) => Err(io::Error::other("a worker thread ended as it started")),
            },
            Err(error) => Err(error),
        };
        if started.is_err() {
            break;
        }
        handoffs.push(handoff);
    }
    drop(exit);
    let result = match started {
        Ok(()) => accept(listener, &handoffs, shutdown, &mut exits).await,
        Err(error) => Err(error),
    };
    on_stop();
    let _ = stop.send(true);
    drop(handoffs);
    // The channel closes once every worker that started has dropped its runtime.
    let mut died = None;
    while let Some(Exit { index, panic }) = exits.recv().await {
        if let Some(panic) = panic {
            tracing::error!(worker = index, %panic, "a worker thread panicked");
            died.get_or_insert(index);
        }
    }
    match (result, died) {
        (Err(error), _) => Err(error),
        (Ok(()), Some(index)) => Err(io::Error::other(format!(
            "worker thread {index} panicked (see the log)"
        ))),
        (Ok(()), None) => Ok(()),
    }
}

/// The text a thread panicked with.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not text)".to_owned())
}

/// Failures to accept a connection (out of file descriptors and the like) are logged at most
/// once per this long, with the number left out since the last line.
const ACCEPT_FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Accepts connections until `shutdown` completes and hands them to the workers in turn. A
/// worker that ends before then (it panicked) ends the loop with an error, so that the server
/// stops instead of refusing every n-th connection.
async fn accept(
    listener: TcpListener,
    handoffs: &[mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>],
    shutdown: impl Future<Output = ()>,
    exits: &mut mpsc::UnboundedReceiver<Exit>,
) -> io::Result<()> {
    tokio::pin!(shutdown);
    let failures = SharedLogBudget::new(ACCEPT_FAILURE_LOG_INTERVAL);
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return Ok(()),
            Some(Exit { index, panic }) = exits.recv() => {
                let panic = panic.unwrap_or_else(|| "(no panic)".to_owned());
                tracing::error!(worker = index, %panic, "a worker thread ended; floe stops");
                return Err(io::Error::other(format!("worker thread {index} ended: {panic}")));
            }
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            // The client gave up before its connection was accepted: nothing to wait for.
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                // Out of file descriptors and the like: wait instead of spinning.
                if let Some(left_out) = failures.admit_one() {
                    tracing::warn!(%error, not_logged_since_last = left_out, "accepting a connection failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Taken off this runtime's reactor, to be registered with the worker's.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%remote, %error, "a connection could not be handed to a worker");
                continue;
            }
        };
        if handoffs[next].send((stream, remote)).is_err() {
            // Its listener is gone: it is ending (the drain after this loop logs why).
            return Err(io::Error::other(format!(
                "worker thread {next} stopped unexpectedly"
            )));
        }
        next = (next + 1) % handoffs.len();
    }
}

/// An accept error that concerns only the connection being accepted, as hyper-util and axum
/// treat them.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use axum::body::Body;
    use tokio::sync::Notify;

    use super::*;

    /// What a test sees of the requests [`probe_service`] serves.
    #[derive(Clone, Default)]
    struct Probe {
        /// Held by every clone of the service and by a task each request leaves behind on
        /// its worker's runtime, which only the end of that runtime drops.
        held: Arc<()>,
        /// Notified as each request arrives.
        arrived: Arc<Notify>,
        /// Requests being served.
        in_flight: Arc<AtomicUsize>,
    }

    /// Lets go of what it holds some time after it is dropped, so that a test that looks
    /// right after a runtime should have been dropped does not see it being dropped.
    struct SlowToDrop {
        _held: Arc<()>,
    }

    impl Drop for SlowToDrop {
        fn drop(&mut self) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A service that answers, after `delay`, with the name of the thread that served the
    /// request.
    fn probe_service(
        probe: Probe,
        delay: Duration,
    ) -> impl Service<Request, Response = Response, Error = Infallible, Future = impl Send>
    + Clone
    + Send
    + 'static {
        tower::service_fn(move |_request: Request| {
            let probe = probe.clone();
            async move {
                let held = SlowToDrop {
                    _held: Arc::clone(&probe.held),
                };
                tokio::spawn(async move {
                    let _held = held;
                    std::future::pending::<()>().await
                });
                probe.in_flight.fetch_add(1, Ordering::SeqCst);
                probe.arrived.notify_one();
                tokio::time::sleep(delay).await;
                probe.in_flight.fetch_sub(1, Ordering::SeqCst);
                let name = std::thread::current()
                    .name()
                    .unwrap_or("unnamed")
                    .to_owned();
                Ok::<_, Infallible>(Response::new(Body::from(name)))
            }
        })
    }

    /// A listener on a free loopback port, and its URL.
    async fn loopback() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        (listener, url)
    }

    /// A server of [`probe_service`]s on its own workers, stopped by `stop`.
    struct ProbeServer {
        url: String,
        probe: Probe,
        stop: oneshot::Sender<()>,
        server: tokio::task::JoinHandle<io::Result<()>>,
    }

    /// Serves [`probe_service`]s answering after `delay` on `workers` workers; `on_stop` is
    /// given the server's probe.
    async fn serve_probes(
        workers: usize,
        delay: Duration,
        on_stop: impl FnOnce(&Probe) + Send + 'static,
    ) -> ProbeServer {
        let (listener, url) = loopback().await;
        let (stop, stop_signal) = oneshot::channel::<()>();
        let probe = Probe::default();
        let (service_probe, stop_probe) = (probe.clone(), probe.clone());
        let server = tokio::spawn(serve_on_workers(
            listener,
            NonZeroUsize::new(workers).unwrap(),
            Duration::from_secs(30),
            |handoff| handoff,
            move |_| probe_service(service_probe.clone(), delay),
            async {
                let _ = stop_signal.await;
            },
            move || on_stop(&stop_probe),
        ));
        ProbeServer {
            url,
            probe,
            stop,
            server,
        }
    }

    /// A client that opens a new connection for every request.
    fn one_connection_per_request() -> reqwest::Client {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("a client builds")
    }

    /// Waits for a stopping server's call to return, and for its result.
    async fn stopped(server: tokio::task::JoinHandle<io::Result<()>>) -> io::Result<()> {
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the server stops")
            .expect("the server's task does not panic")
    }

    #[tokio::test]
    async fn connections_go_to_the_workers_in_turn_and_stay_there() {
        let ProbeServer {
            url,
            probe,
            stop,
            server,
        } = serve_probes(3, Duration::ZERO, |_| {}).await;
        let fresh = one_connection_per_request();
        let mut served_by = Vec::new();
        for _ in 0..6 {
            served_by.push(fresh.get(&url).send().await.unwrap().text().await.unwrap());
        }
        assert_eq!(
            served_by,
            [0, 1, 2, 0, 1, 2].map(|index| format!("floe-worker-{index}"))
        );
        // Every request on one kept-alive connection is served by the worker that got it.
        let kept = reqwest::Client::new();
        let first = kept.get(&url).send().await.unwrap().text().await.unwrap();
        for _ in 0..5 {
            assert_eq!(
                kept.get(&url).send().await.unwrap().text().await.unwrap(),
                first
            );
        }
        stop.send(()).unwrap();
        stopped(server).await.expect("a clean stop");
        // Every worker's runtime is gone, with every task on it and every clone of the
        // service: what the application holds (the store's handles) is released by the time
        // the call returns.
        assert_eq!(Arc::strong_count(&probe.held), 1);
        assert!(fresh.get(&url).send().await.is_err());
    }

    #[tokio::test]
    async fn a_stop_calls_on_stop_first_and_lets_the_request_in_flight_finish() {
        let in_flight_at_on_stop = Arc::new(AtomicUsize::new(usize::MAX));
        let seen = Arc::clone(&in_flight_at_on_stop);
        let ProbeServer {
            url,
            probe,
            stop,
            server,
        } = serve_probes(2, Duration::from_millis(300), move |probe| {
            seen.store(probe.in_flight.load(Ordering::SeqCst), Ordering::SeqCst)
        })
        .await;
        let slow = tokio::spawn(one_connection_per_request().get(&url).send());
        probe.arrived.notified().await;
        stop.send(()).unwrap();
        let answer = slow
            .await
            .unwrap()
            .expect("the request in flight is answered");
        assert!(answer.status().is_success());
        assert!(answer.text().await.unwrap().starts_with("floe-worker-"));
        stopped(server).await.expect("a clean stop");
        assert_eq!(
            in_flight_at_on_stop.load(Ordering::SeqCst),
            1,
            "on_stop ran while the request was still being served"
        );
    }

    #[tokio::test]
    async fn a_worker_that_dies_stops_the_server_with_an_error() {
        let (listener, url) = loopback().await;
        let on_stop_called = Arc::new(AtomicBool::new(false));
        let called = Arc::clone(&on_stop_called);
        let server = tokio::spawn(serve_on_workers(
            listener,
            NonZeroUsize::new(2).unwrap(),
            Duration::from_secs(30),
            |handoff| handoff,
            |_| -> tower::util::BoxCloneSyncService<Request, Response, Infallible> {
                panic!("this worker dies at its first connection")
            },
            std::future::pending(),
            move || called.store(true, Ordering::SeqCst),
        ));
        // The first connection kills worker 0; the server stops without waiting for another.
        let _ = one_connection_per_request().get(&url).send().await;
        let error = stopped(server)
            .await
            .expect_err("the server stops with an error");
        assert!(
            error.to_string().contains("this worker dies"),
            "the error says what the worker panicked with: {error}"
        );
        assert!(on_stop_called.load(Ordering::SeqCst));
    }
}
