//! `/v1/configuration/leases`: a node's claim on a dataset, with an optional expiry.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::body::RawBody;
use super::conditional::Conditions;
use super::{ApiError, AppState, json_response};
use crate::model::{DatasetId, Lease, NodeId, Operation, Outcome, Timestamp, schema};
use crate::store::now_millis;

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

async fn list_leases(State(state): State<AppState>) -> Response {
    let snapshot = state.store.snapshot();
    let now = now_millis();
    let leases: Vec<_> = snapshot
        .configuration
        .leases()
        .map(|lease| LeaseBody::at(lease, now))
        .collect();
    let body = serde_json::to_vec(&leases).expect("leases serialise");
    json_response(StatusCode::OK, &snapshot.tag, body.into())
}

async fn acquire_lease(
    State(state): State<AppState>,
    conditions: Conditions,
    body: RawBody,
) -> Result<Response, ApiError> {
    conditions.check_early(&state.store.snapshot())?;
    let (input, _): (LeaseBody, _) = body.decode(&schema::LEASE)?;
    let requested = input.expires;
    let committed = state
        .submit(
            conditions,
            Operation::AcquireLease {
                dataset_id: input.dataset_id,
                node_uuid: input.node_uuid,
                expires: requested,
            },
        )
        .await?;
    let Outcome::Lease { lease, created } = &committed.outcome else {
        unreachable!("acquiring answers with a lease")
    };
    tracing::info!(dataset_id = %lease.dataset_id, node_uuid = %lease.node_uuid, expires = ?requested, created, "lease acquired");
    // Flocker echoes the duration asked for, not the time left by the time we answer.
    let answer = LeaseBody {
        expires: requested,
        ..LeaseBody::at(lease, 0)
    };
    let status = if *created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = serde_json::to_vec(&answer).expect("a lease serialises");
    Ok(json_response(status, &committed.tag, body.into()))
}

async fn release_lease(
    State(state): State<AppState>,
    conditions: Conditions,
    Path(dataset_id): Path<String>,
) -> Result<Response, ApiError> {
    conditions.check_early(&state.store.snapshot())?;
    // Any spelling of a UUID names the lease (Flocker parses it); anything else is a bad
    // request rather than Flocker's 500.
    let dataset_id = Uuid::try_parse(&dataset_id).map_err(|_| {
        ApiError::BadRequest(format!(
            "The lease's dataset_id must be a UUID, not {dataset_id:?}."
        ))
    })?;
    let committed = state
        .submit(conditions, Operation::ReleaseLease { dataset_id })
        .await?;
    let Outcome::Lease { lease, .. } = &committed.outcome else {
        unreachable!("releasing answers with the released lease")
    };
    tracing::info!(dataset_id = %lease.dataset_id, node_uuid = %lease.node_uuid, "lease released");
    let body = serde_json::to_vec(&LeaseBody::at(lease, now_millis())).expect("a lease serialises");
    Ok(json_response(StatusCode::OK, &committed.tag, body.into()))
}
