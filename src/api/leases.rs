//! `/v1/configuration/leases`: a node's claim on a dataset, with an optional expiry.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::answer::Answer;
use super::body::WriteRequest;
use super::conditional::{Conditions, version_headers};
use super::segment::Segment;
use super::{ApiError, AppState, Render, weak_list_answer};
use crate::model::precondition::ResourceVersion;
use crate::model::{Collection, DatasetId, Lease, NodeId, Operation, Outcome, Timestamp, schema};
use crate::store::{Committed, now_millis};

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/configuration/leases",
            get(list_leases).post(acquire_lease),
        )
        .route(
            "/v1/configuration/leases/{dataset_id}",
            delete(release_lease),
        )
}

/// A lease on the wire: `expires` is the number of seconds left (a float), or null.
#[derive(Debug, Serialize, Deserialize)]
struct LeaseBody {
    dataset_id: DatasetId,
    node_uuid: NodeId,
    expires: Option<f64>,
}

impl LeaseBody {
    fn at(lease: &Lease, now: Timestamp) -> Self {
        LeaseBody {
            dataset_id: lease.dataset_id,
            node_uuid: lease.node_uuid,
            expires: lease.seconds_remaining(now),
        }
    }
}

/// The list's ETag is weak: it is the configuration tag of the last change to a lease, but
/// the seconds left in each lease change with every second.
async fn list_leases(State(state): State<AppState>, conditions: Conditions) -> Response {
    state.hold_for_list(&conditions, Collection::Leases).await;
    let snapshot = state.store.read();
    weak_list_answer(
        &conditions,
        snapshot.lists.tag(Collection::Leases).as_str(),
        Some(&snapshot.tag),
        || {
            let now = now_millis();
            let leases: Vec<_> = snapshot
                .configuration
                .leases()
                .map(|lease| LeaseBody::at(lease, now))
                .collect();
            serde_json::to_vec(&leases).expect("leases serialise")
        },
    )
}

async fn acquire_lease(
    State(state): State<AppState>,
    conditions: Conditions,
    request: WriteRequest,
) -> Result<Response, ApiError> {
    state
        .write(conditions, &request, |request| {
            let input: LeaseBody = request.decode(&schema::LEASE)?;
            let operation = Operation::AcquireLease {
                dataset_id: input.dataset_id,
                node_uuid: input.node_uuid,
                expires: input.expires,
            };
            // Flocker echoes the duration asked for, not the time left when it answers.
            Ok((
                operation,
                lease_answer(LeaseWrite::Acquired {
                    requested: input.expires,
                }),
            ))
        })
        .await
}

async fn release_lease(
    State(state): State<AppState>,
    conditions: Conditions,
    Segment(dataset_id): Segment,
    request: WriteRequest,
) -> Result<Response, ApiError> {
    state
        .write(conditions, &request, |_| {
            // Any spelling of a UUID names the lease (Flocker parses it); anything else is a
            // bad request rather than Flocker's 500.
            let dataset_id = Uuid::try_parse(&dataset_id).map_err(|_| {
                ApiError::BadRequest(format!(
                    "The lease's dataset_id must be a UUID, not {dataset_id:?}."
                ))
            })?;
            Ok((
                Operation::ReleaseLease { dataset_id },
                lease_answer(LeaseWrite::Released),
            ))
        })
        .await
}

/// Which write a lease's answer is for.
enum LeaseWrite {
    /// An acquire or renewal, with the duration it asked for (`None`: no expiry), echoed as is.
    Acquired { requested: Option<f64> },
    /// A release, which shows the seconds that were left.
    Released,
}

/// Renders a lease after a write: 201 for a new lease, 200 otherwise.
fn lease_answer(write: LeaseWrite) -> Render {
    Box::new(move |committed: &Committed| {
        let Outcome::Lease { lease, created } = &committed.outcome else {
            unreachable!("lease operations answer with a lease")
        };
        let (status, body) = match write {
            LeaseWrite::Acquired { requested: expires } => {
                tracing::debug!(dataset_id = %lease.dataset_id, node_uuid = %lease.node_uuid, ?expires, created, "lease acquired");
                let status = if *created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                let body = LeaseBody {
                    expires,
                    ..LeaseBody::at(lease, 0)
                };
                (status, body)
            }
            LeaseWrite::Released => {
                tracing::debug!(dataset_id = %lease.dataset_id, node_uuid = %lease.node_uuid, "lease released");
                (StatusCode::OK, LeaseBody::at(lease, now_millis()))
            }
        };
        let body = serde_json::to_vec(&body).expect("a lease serialises");
        let mut answer = Answer::json(status, body).with_tag(&committed.tag);
        let etag = lease.content_tag();
        version_headers(
            &mut answer.headers,
            ResourceVersion::strong(etag.as_str(), None),
        );
        answer
    })
}
