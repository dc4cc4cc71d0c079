//! The HTTP surface: one module per resource, each with its own `router()`, merged here with
//! JSON answers for unknown routes and wrong methods; the hot reads answered ahead of routing;
//! the request layers (authentication, client identity, tracing) around both; and the one
//! write path every change to the configuration goes through (agents' reports go to the
//! cluster state, account changes to the accounts, each by its own path).

pub mod answer;
pub mod auth;
pub mod body;
pub mod conditional;
pub mod containers;
pub mod cors;
pub mod datasets;
pub mod error;
pub mod identity;
pub mod leases;
pub mod mathematicians;
pub mod meta;
pub mod openapi;
pub mod packages;
pub mod segment;
pub mod sessions;
pub mod state;
pub mod users;
pub mod version;
pub mod waiting;

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Ready;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use futures_util::FutureExt;
use futures_util::future::{Either, Map};
use tower::Service;
use tower_http::trace::TraceLayer;

use crate::model::precondition::ResourceVersion;
use crate::model::{Collection, Operation};
use crate::store::accounts::Accounts;
use crate::store::cluster::LiveCluster;
use crate::store::{
    Command, Committed, ConfigTag, Idempotency, Reply, Store, StoreError, recorded_for_retry,
};
use answer::Answer;
use body::WriteRequest;
use conditional::{Conditions, IDEMPOTENT_REPLAYED, IfMatchPolicy};
pub use error::ApiError;
use meta::MetaFields;

/// Request bodies larger than this are refused with 413 before they are read.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Settings that shape answers.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// How entity tags are used.
    pub if_match: IfMatchPolicy,
    /// Names of the meta fields in representations that carry them.
    pub meta: MetaFields,
    /// The longest a list request may wait for a change (`Prefer: wait=N`).
    pub max_wait: Duration,
    /// The longest a request's body may take to arrive once its head has.
    pub body_read_timeout: Duration,
    /// Whether clients reach this server over HTTPS, so that absolute links (a mathematician's
    /// self link and `Location`) name the scheme they can follow.
    pub https: bool,
    /// `--public-url`: where absolute links start instead, when clients reach floe through a
    /// proxy (no trailing slash).
    pub public_url: Option<String>,
}

/// What every handler can reach. One `Arc`, because axum clones the state for every request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The contents of [`AppState`].
pub struct Shared {
    /// The configuration store.
    pub store: Store,
    /// The cluster state agents report.
    pub cluster: LiveCluster,
    /// Settings.
    pub settings: ApiSettings,
    /// Users and tokens; `None` when authentication is off (`--auth none`).
    pub accounts: Option<Arc<Accounts>>,
    /// The dataset list, rendered once per change to a dataset.
    pub rendered: datasets::RenderedList,
    /// The requests held until their list changes, and their release when the server stops.
    pub waits: waiting::Waits,
    in_flight: Arc<Mutex<HashSet<String>>>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Renders the answer to a write that the store applied.
pub type Render = Box<dyn FnOnce(&Committed) -> Answer + Send>;

impl AppState {
    /// State over `store`; `accounts` is `None` when authentication is off.
    pub fn new(
        store: Store,
        cluster: LiveCluster,
        settings: ApiSettings,
        accounts: Option<Arc<Accounts>>,
    ) -> Self {
        AppState(Arc::new(Shared {
            store,
            cluster,
            waits: waiting::Waits::new(settings.max_wait),
            settings,
            accounts,
            rendered: datasets::RenderedList::default(),
            in_flight: Arc::default(),
        }))
    }

    /// The one write path. In order: an `Idempotency-Key` that was seen before replays its
    /// first answer (or is refused if in flight or used for another request); a stale
    /// configuration tag answers 412; `decode` turns the body into an operation and the
    /// renderer of its answer; the store applies it under the request's preconditions and
    /// makes it (and, with a key, its answer, unless preconditions refused it) durable; the
    /// answer is sent.
    pub async fn write(
        &self,
        conditions: Conditions,
        request: &WriteRequest,
        decode: impl FnOnce(&WriteRequest) -> Result<(Operation, Render), ApiError>,
    ) -> Result<Response, ApiError> {
        let snapshot = self.store.read();
        let mut _claim = None;
        let mut idempotency = None;
        if let Some(key) = &conditions.idempotency_key {
            _claim = Some(self.claim(key)?);
            let fingerprint = request.fingerprint();
            if let Some(recorded) = recorded_for_retry(&snapshot.answers, key, &fingerprint) {
                return Ok(replay(&recorded?.answer));
            }
            idempotency = Some((key.clone(), fingerprint));
        }
        conditions.check_tag_early(&snapshot)?;
        let (operation, render) = match decode(request) {
            Ok(decoded) => decoded,
            // Preconditions come before the body (RFC 9110 §13.2.1): a body refused with
            // stale validators is a 412, without a required one a 428. Looked at only once the
            // body failed, so that writes with a good body do not pay for a lookup the writer
            // makes anyway.
            Err(refused) => {
                conditions.check_preconditions_early(&snapshot)?;
                return Err(refused);
            }
        };
        drop(snapshot);
        // With entity tags off, no answer carries validators: renderers always add them, and
        // they are taken off here, once, before an answer is sent or recorded.
        let render: Render = if conditions.etags {
            render
        } else {
            Box::new(move |committed: &Committed| {
                let mut answer = render(committed);
                answer.headers.remove(axum::http::header::ETAG);
                answer.headers.remove(axum::http::header::LAST_MODIFIED);
                answer
            })
        };

        let (idempotency, render) = match idempotency {
            Some((key, fingerprint)) => {
                let record = Box::new(
                    move |result: &Result<Committed, StoreError>, tag: &ConfigTag| {
                        match result {
                            Ok(committed) => render(committed),
                            // Recorded as it is sent when nothing is recorded.
                            Err(error) => ApiError::Refused {
                                error: error.clone(),
                                tag: tag.clone(),
                            }
                            .answer(),
                        }
                        .record()
                    },
                );
                let idempotency = Idempotency {
                    key,
                    fingerprint,
                    record,
                };
                (Some(idempotency), None)
            }
            None => (None, Some(render)),
        };
        let command = Command {
            precondition: conditions.precondition,
            operation,
            idempotency,
        };
        match (self.store.submit(command).await, render) {
            (Reply::Recorded(record), _) => Ok(Answer::from_record(&record.answer).into_response()),
            (Reply::Replayed(record), _) => Ok(replay(&record.answer)),
            (Reply::Done(Ok(committed)), Some(render)) => Ok(render(&committed).into_response()),
            // A refusal carries the configuration tag it can be judged against, as every
            // write's answer does (the writer published its batch before answering).
            (Reply::Done(Err(error)), _) => Err(ApiError::Refused {
                error,
                tag: self.store.read().tag.clone(),
            }),
            (Reply::Done(Ok(_)), None) => {
                unreachable!("the store records every idempotent command's success")
            }
        }
    }

    /// Holds a request for the list of `collection` that asks to wait (see [`waiting`]) until
    /// that list changes.
    pub async fn hold_for_list(&self, conditions: &Conditions, collection: Collection) {
        self.waits
            .hold_while_unchanged(
                conditions,
                || self.store.subscribe(),
                || self.store.read().lists.tag(collection).to_string(),
            )
            .await;
    }

    /// Marks an idempotency key as in flight until the returned guard is dropped.
    fn claim(&self, key: &str) -> Result<Claim, ApiError> {
        // A set of keys is whole after any panic: a poisoned lock is used as it is, so that
        // neither a claim nor its release can fail.
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !in_flight.insert(key.to_string()) {
            return Err(ApiError::IdempotencyKeyInFlight);
        }
        Ok(Claim {
            key: key.to_string(),
            in_flight: Arc::clone(&self.in_flight),
        })
    }
}

/// An idempotency key in flight; released on drop, whatever happens to the request.
struct Claim {
    key: String,
    in_flight: Arc<Mutex<HashSet<String>>>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.key);
    }
}

/// A list's answer: 304 or 412 if its validators say so (the body is then never rendered),
/// otherwise 200 with the body, the list's strong ETag and, for configuration lists, the
/// configuration tag.
pub(crate) fn list_answer<B: Into<Bytes>>(
    conditions: &Conditions,
    etag: &str,
    tag: Option<&ConfigTag>,
    body: impl FnOnce() -> B,
) -> Response {
    list_answer_as(conditions, ResourceVersion::strong(etag, None), tag, body)
}

/// As [`list_answer`], with a weak ETag: for a list whose bytes change while its version does
/// not, such as leases with their seconds left.
pub(crate) fn weak_list_answer<B: Into<Bytes>>(
    conditions: &Conditions,
    etag: &str,
    tag: Option<&ConfigTag>,
    body: impl FnOnce() -> B,
) -> Response {
    let version = ResourceVersion {
        etag,
        weak: true,
        last_modified: None,
    };
    list_answer_as(conditions, version, tag, body)
}

fn list_answer_as<B: Into<Bytes>>(
    conditions: &Conditions,
    version: ResourceVersion<'_>,
    tag: Option<&ConfigTag>,
    body: impl FnOnce() -> B,
) -> Response {
    if let Some(answer) = conditions.check_read(Some(version), tag) {
        return answer;
    }
    let mut answer = Answer::json(StatusCode::OK, body());
    if let Some(tag) = tag {
        answer = answer.with_tag(tag);
    }
    conditions.add_validators(&mut answer.headers, version);
    answer.into_response()
}

/// A recorded answer sent again, marked as such.
fn replay(recorded: &crate::store::RecordedAnswer) -> Response {
    let mut answer = Answer::from_record(recorded);
    answer
        .headers
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    answer.into_response()
}

/// The complete application: the hot reads and every route, inside the request layers the
/// settings call for. `client_certificates` is `Some(required)` when clients connect over TLS,
/// whose identity then decides what each may do (a connection's requests must carry its
/// [`crate::tls::Peer`] as `ConnectInfo`).
pub fn app(state: AppState, client_certificates: Option<bool>) -> App {
    let bare = App(Inner::Bare {
        routes: routes().with_state(state.clone()),
        state: state.clone(),
    });
    let authenticates = state.accounts.is_some();
    // Requests are traced only when debug logging is on (`RUST_LOG=floe=debug`): the layer
    // times every request and wraps every body, a cost not worth paying to log nothing.
    let traces = tracing::enabled!(tracing::Level::DEBUG);
    if !authenticates && !traces && client_certificates.is_none() {
        // No layer at all: every request is `Caller::Anyone` and `Identity::Anonymous`.
        return bare;
    }
    // A router with no route of its own, so that the layers wrap the hot reads as they wrap
    // every route: one place decides who may read, whichever way the answer is made.
    let mut layered = Router::new().fallback_service(bare);
    if authenticates {
        layered = layered.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    }
    if traces {
        layered = layered.layer(TraceLayer::new_for_http().make_span_with(
            |request: &Request<_>| {
                tracing::debug_span!("request", method = %request.method(), path = %logged_path(request.uri().path()))
            },
        ));
    }
    if let Some(required) = client_certificates {
        layered = layered.layer(axum::middleware::from_fn_with_state(
            required,
            identity::authorize,
        ));
    }
    App(Inner::Layered(layered))
}

/// `path` as request traces show it. A session's path names its token
/// (`/api/{v}/sessions/{token}`), a bearer credential valid for a year: it must not reach log
/// files, so that segment is replaced.
fn logged_path(path: &str) -> std::borrow::Cow<'_, str> {
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        ["", "api", _, "sessions", token, ..] if !token.is_empty() => {
            let mut redacted = segments.clone();
            redacted[4] = "<token>";
            redacted.join("/").into()
        }
        _ => path.into(),
    }
}

/// floe's HTTP service, as [`app`] builds it.
///
/// The hottest reads are answered without routing: a GET of the dataset list or of one
/// dataset (what agents and clients poll) is served from the snapshot by the code its handler
/// runs, without the route lookup, the path parameters and the extractors, which cost GET one
/// dataset a fifth of its CPU. Every other request goes to the routes.
#[derive(Clone)]
pub struct App(Inner);

#[derive(Clone)]
enum Inner {
    /// The hot reads, then the routes.
    Bare { state: AppState, routes: Router },
    /// The request layers, around a router whose only service is a bare `App`.
    Layered(Router),
}

/// A request being answered: at once (a hot read), or by a router (a HEAD's answer then passes
/// through `head_answer`).
pub type Answering = Either<
    Ready<Result<Response, Infallible>>,
    Either<RouteFuture<Infallible>, Map<RouteFuture<Infallible>, AnswerFix>>,
>;

/// What is done to a routed answer before it is sent.
type AnswerFix = fn(Result<Response, Infallible>) -> Result<Response, Infallible>;

/// A routed request's answer, fixed up if the request is a HEAD.
fn routed(future: RouteFuture<Infallible>, head: bool) -> Answering {
    if head {
        Either::Right(Either::Right(future.map(head_answer as AnswerFix)))
    } else {
        Either::Right(Either::Left(future))
    }
}

/// The answer to a HEAD: a 304 without the `Content-Length: 0` axum gives every empty body.
/// A HEAD's `Content-Length` names the length a GET's content would have (RFC 9110 §8.6), so
/// 0 misstates it; a 304 to a GET carries none, and neither does this one.
fn head_answer(answer: Result<Response, Infallible>) -> Result<Response, Infallible> {
    answer.map(|mut response| {
        if response.status() == StatusCode::NOT_MODIFIED {
            response
                .headers_mut()
                .remove(axum::http::header::CONTENT_LENGTH);
        }
        response
    })
}

impl Service<Request> for App {
    type Response = Response;
    type Error = Infallible;
    type Future = Answering;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Always ready, as a `Router` is.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Answering {
        match &mut self.0 {
            Inner::Bare { state, routes } => match datasets::hot_read(state, &request) {
                Some(answer) => Either::Left(std::future::ready(Ok(answer))),
                None => {
                    let head = request.method() == Method::HEAD;
                    routed(routes.call(request), head)
                }
            },
            Inner::Layered(router) => {
                let head = request.method() == Method::HEAD;
                routed(router.call(request), head)
            }
        }
    }
}

/// Every route, with JSON answers for unknown routes and wrong methods.
fn routes() -> Router<AppState> {
    Router::new()
        .merge(version::router())
        .merge(openapi::router())
        .merge(datasets::router())
        .merge(leases::router())
        .merge(mathematicians::router())
        .merge(packages::router())
        .merge(sessions::router())
        .merge(users::router())
        .merge(containers::router())
        .merge(state::router())
        .fallback(|uri: axum::http::Uri| async move {
            cors::with_cors(uri.path(), ApiError::NoRoute.into_response())
        })
        .method_not_allowed_fallback(|uri: axum::http::Uri| async move {
            cors::with_cors(uri.path(), ApiError::MethodNotAllowed.into_response())
        })
}
