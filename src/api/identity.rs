//! Who is connecting: the [`Identity`] a request carries (from its TLS client certificate)
//! and the rules on what each kind of identity may do, applied before routing. Tokens and
//! permissions are `auth`'s; a `user-` certificate stands for that user there.
//!
//! At this layer an API user may go on to any route, where `auth` checks that user's
//! permissions; a node's agent may report its own node and read what it needs to converge,
//! nothing else. Handlers that need the identity take it as an argument (it is an extractor).

use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::agent::control;
use crate::model::NodeId;
use crate::tls::Peer;

/// The prefix of an API user's certificate common name (Flocker's convention).
pub const USER_PREFIX: &str = "user-";
/// The prefix of a node agent's certificate common name (Flocker's convention).
pub const NODE_PREFIX: &str = "node-";

/// Paths a node's agent may read (GET): what it needs to converge its node. The reference
/// agent's own constants, so that what it reads and what its certificate allows cannot drift.
const NODE_READABLE: [&str; 3] = [
    control::CONFIGURATION_DATASETS,
    control::LEASES,
    control::STATE_DATASETS,
];

/// Who sent a request (extract it as a handler argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// An API user, named by a `user-<name>` certificate.
    User(String),
    /// The agent of a node, named by a `node-<uuid>` certificate.
    Node(NodeId),
    /// Nobody in particular: the service does not authenticate clients (plain HTTP, or TLS
    /// without `--tls-client-ca`).
    Anonymous,
}

impl Identity {
    /// The identity a certificate's common name names, or `None` if it names none floe knows.
    pub fn from_common_name(common_name: &str) -> Option<Identity> {
        if let Some(name) = common_name.strip_prefix(USER_PREFIX) {
            return (!name.is_empty()).then(|| Identity::User(name.to_string()));
        }
        let uuid = common_name.strip_prefix(NODE_PREFIX)?;
        uuid::Uuid::try_parse(uuid).ok().map(Identity::Node)
    }

    /// Whether this identity may make `method` on `path`.
    pub fn may(&self, method: &Method, path: &str) -> bool {
        match self {
            Identity::User(_) | Identity::Anonymous => true,
            Identity::Node(node) => {
                let own = path
                    .strip_prefix("/v1/agent/nodes/")
                    .and_then(|id| uuid::Uuid::try_parse(id).ok())
                    == Some(*node);
                (own && (method == Method::PUT || method == Method::DELETE))
                    || (method == Method::GET && NODE_READABLE.contains(&path))
            }
        }
    }
}

/// Handlers read the identity as an extractor: the one the TLS layer put into the request,
/// or [`Identity::Anonymous`] where nothing authenticates clients (plain HTTP adds no layer,
/// so that it costs nothing per request).
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Identity {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Identity>()
            .cloned()
            .unwrap_or(Identity::Anonymous))
    }
}

/// Middleware for TLS: puts the connection's identity into the request and refuses (403)
/// what that identity may not do. `required` says whether a client certificate is required;
/// the handshake already refused clients without an acceptable one, so a request without an
/// identity then is refused here only as a second line.
pub async fn authorize(
    State(required): State<bool>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    mut request: Request,
    next: Next,
) -> Response {
    let identity = match peer.identity {
        Some(identity) => identity,
        None if !required => Identity::Anonymous,
        None => {
            return ApiError::IdentityForbidden(
                "A client certificate naming a user or a node is required.".into(),
            )
            .into_response();
        }
    };
    if !identity.may(request.method(), request.uri().path()) {
        tracing::warn!(
            identity = ?identity,
            remote = %peer.remote,
            method = %request.method(),
            path = %request.uri().path(),
            "request refused: not allowed for this identity"
        );
        let description = match &identity {
            Identity::Node(node) => format!(
                "The certificate of node {node} may only report that node's state (PUT or DELETE /v1/agent/nodes/{node})."
            ),
            _ => "This identity may not make this request.".into(),
        };
        return ApiError::IdentityForbidden(description).into_response();
    }
    request.extensions_mut().insert(identity);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use axum::extract::FromRequestParts;

    #[tokio::test]
    async fn the_identity_is_anonymous_unless_a_layer_set_one() {
        let (mut parts, ()) = axum::http::Request::new(()).into_parts();
        assert_eq!(
            Identity::from_request_parts(&mut parts, &()).await.unwrap(),
            Identity::Anonymous
        );
        parts.extensions.insert(Identity::User("alice".into()));
        assert_eq!(
            Identity::from_request_parts(&mut parts, &()).await.unwrap(),
            Identity::User("alice".into())
        );
    }

    use super::*;

    const NODE: &str = "cf0f0346-17b2-4812-beca-1434997d6c3f";

    #[test]
    fn common_names() {
        assert_eq!(
            Identity::from_common_name("user-alice"),
            Some(Identity::User("alice".into()))
        );
        assert_eq!(
            Identity::from_common_name(&format!("node-{NODE}")),
            Some(Identity::Node(NODE.parse().unwrap()))
        );
        for refused in ["user-", "node-x", "alice", "control-service", ""] {
            assert_eq!(Identity::from_common_name(refused), None, "{refused}");
        }
    }

    /// A router whose one handler answers with the identity it finds in the request.
    async fn identity_seen(
        peer: Option<Identity>,
        required: bool,
        method: Method,
        path: &str,
    ) -> (u16, String) {
        use axum::Extension;
        use axum::body::Body;
        use tower::ServiceExt;
        let router = axum::Router::new()
            .fallback(
                |Extension(identity): Extension<Identity>| async move { format!("{identity:?}") },
            )
            .layer(axum::middleware::from_fn_with_state(required, authorize));
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        request.extensions_mut().insert(ConnectInfo(Peer {
            remote: ([127, 0, 0, 1], 1).into(),
            identity: peer,
        }));
        let response = router.oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn handlers_find_the_identity_in_the_request() {
        let alice = Some(Identity::User("alice".into()));
        assert_eq!(
            identity_seen(alice, true, Method::POST, "/v1/configuration/datasets").await,
            (200, r#"User("alice")"#.to_string())
        );
        assert_eq!(
            identity_seen(None, false, Method::GET, "/").await,
            (200, "Anonymous".to_string())
        );
        let (status, body) = identity_seen(None, true, Method::GET, "/").await;
        assert_eq!(status, 403);
        assert!(body.contains("description"), "{body}");
        let node = Some(Identity::Node(NODE.parse().unwrap()));
        let (status, body) =
            identity_seen(node, true, Method::POST, "/v1/configuration/datasets").await;
        assert_eq!(status, 403);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(body["description"].as_str().unwrap().contains(NODE));
    }

    #[test]
    fn a_node_reports_only_itself() {
        let node = Identity::Node(NODE.parse().unwrap());
        let own = format!("/v1/agent/nodes/{NODE}");
        assert!(node.may(&Method::PUT, &own));
        assert!(node.may(&Method::DELETE, &own));
        assert!(node.may(&Method::GET, "/v1/configuration/datasets"));
        assert!(!node.may(&Method::GET, &own));
        assert!(!node.may(&Method::POST, "/v1/configuration/datasets"));
        assert!(!node.may(
            &Method::PUT,
            "/v1/agent/nodes/7ec3c4eb-6b1c-43da-8015-a163f7d15244"
        ));
    }
}
