//! Connections spread over worker threads, each with its own single-threaded tokio runtime:
//! one task accepts, and hands each connection in turn to the next worker, which serves it
//! for its whole life (the design of actix-web's server).
//!
//! Why not one runtime whose threads share every task: there, a connection's task woken by
//! the kernel may run on either thread, and an idle thread is woken to steal it, which costs a
//! futex wake-up and the task's data moving between caches several times per request. Side by
//! side (BENCHMARKS.md), the same axum server answered about 10 % more small GETs and 5 % more
//! lists per second, on less CPU each, once every connection stayed on one thread. What is
//! given up is stealing: a request that keeps its thread busy delays that thread's other
//! connections, not the others'. floe's handlers only wait on the writer or on changes, and
//! the one heavy computation (argon2 at login) runs on the blocking pool.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tower::Service;

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

/// Serves `listener` on `workers` threads until `shutdown` completes; returns once every
/// worker has stopped (see [`super::serve`] for what a stop waits for), and with its runtime
/// everything it held. `listener_for` makes a worker's listener from its [`Handoff`] (a TLS
/// listener does the handshakes on the worker); `service_for` and `head_timeout` are
/// [`super::serve`]'s.
pub async fn serve_on_workers<L, S, F>(
    listener: TcpListener,
    workers: NonZeroUsize,
    head_timeout: Duration,
    listener_for: impl Fn(Handoff) -> L + Clone + Send + 'static,
    service_for: F,
    shutdown: impl Future<Output = ()>,
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
    // Each worker holds a sender until its runtime is gone; `recv` returns `None` then.
    let (alive, mut all_gone) = mpsc::channel::<()>(1);
    let mut handoffs = Vec::with_capacity(workers.get());
    for index in 0..workers.get() {
        // Unbounded: what waits in it are connections already accepted, which the open-file
        // limit bounds; a bounded queue would hold every worker up behind one busy one.
        let (handoff, connections) = mpsc::unbounded_channel();
        handoffs.push(handoff);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener_for = listener_for.clone();
        let service_for = service_for.clone();
        let mut stopped = stopped.clone();
        let alive = alive.clone();
        std::thread::Builder::new()
            .name(format!("floe-worker-{index}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = listener_for(Handoff { connections, local });
                    let shutdown = async move {
                        // An error means the sender is gone: stop as well.
                        let _ = stopped.wait_for(|stop| *stop).await;
                    };
                    super::serve(listener, head_timeout, service_for, shutdown).await;
                });
                drop(runtime);
                drop(alive);
            })?;
    }
    drop(alive);
    let result = accept(listener, &handoffs, shutdown).await;
    let _ = stop.send(true);
    drop(handoffs);
    all_gone.recv().await;
    result
}

/// Accepts connections until `shutdown` completes and hands them to the workers in turn. A
/// worker that is gone (its thread panicked) ends the loop with an error, so that the server
/// stops instead of refusing every n-th connection.
async fn accept(
    listener: TcpListener,
    handoffs: &[mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>],
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    tokio::pin!(shutdown);
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return Ok(()),
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait instead of spinning, as axum's
                // own listener does.
                tracing::warn!(%error, "accepting a connection failed");
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
            return Err(io::Error::other("a worker thread stopped unexpectedly"));
        }
        next = (next + 1) % handoffs.len();
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::body::Body;

    use super::*;

    /// A service that answers with the name of the thread that served the request.
    fn thread_name_service()
    -> impl Service<Request, Response = Response, Error = Infallible, Future = impl Send>
    + Clone
    + Send
    + 'static {
        tower::service_fn(|_request: Request| async {
            let name = std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_owned();
            Ok::<_, Infallible>(Response::new(Body::from(name)))
        })
    }

    /// A client that opens a new connection for every request.
    fn one_connection_per_request() -> reqwest::Client {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("a client builds")
    }

    #[tokio::test]
    async fn connections_go_to_the_workers_in_turn_and_stay_there() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_on_workers(
            listener,
            NonZeroUsize::new(3).unwrap(),
            Duration::from_secs(30),
            |handoff| handoff,
            |_| thread_name_service(),
            async {
                let _ = stopped.await;
            },
        ));
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
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the server stops")
            .unwrap()
            .expect("a clean stop");
        // Every worker's runtime is gone, and with it the listener: nothing answers any more.
        assert!(fresh.get(&url).send().await.is_err());
    }

    #[tokio::test]
    async fn a_worker_that_died_stops_the_server_with_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let server = tokio::spawn(serve_on_workers(
            listener,
            NonZeroUsize::MIN,
            Duration::from_secs(30),
            |handoff| handoff,
            |_| -> tower::util::BoxCloneSyncService<Request, Response, Infallible> {
                panic!("this worker dies at its first connection")
            },
            std::future::pending(),
        ));
        let fresh = one_connection_per_request();
        // The first connection kills the only worker; a later one finds it gone.
        let mut stopped = None;
        for _ in 0..50 {
            let _ = fresh.get(&url).send().await;
            if server.is_finished() {
                stopped = Some(server.await.unwrap());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let error = stopped
            .expect("the server stops by itself")
            .expect_err("with an error");
        assert!(
            error.to_string().contains("worker thread stopped"),
            "{error}"
        );
    }
}
