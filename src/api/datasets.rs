//! `/v1/configuration/datasets`: Flocker's dataset configuration (list, create, read, move,
//! delete), every write conditional on the configuration tag when the client asks.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use uuid::Uuid;

use super::body::RawBody;
use super::conditional::Conditions;
use super::{ApiError, AppState, json_response};
use crate::model::dataset::dataset_id_from_path;
use crate::model::schema;
use crate::model::{Metadata, NodeId, Operation, Outcome};
use crate::store::{Committed, Snapshot};

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/configuration/datasets",
            get(list_datasets).post(create_dataset),
        )
        .route(
            "/v1/configuration/datasets/{dataset_id}",
            get(get_dataset).post(move_dataset).delete(delete_dataset),
        )
}

/// The body of a create.
#[derive(Debug, Deserialize)]
struct CreateDataset {
    primary: NodeId,
    dataset_id: Option<Uuid>,
    #[serde(default)]
    metadata: Metadata,
    maximum_size: Option<u64>,
    deleted: Option<bool>,
}

/// The body of a move.
#[derive(Debug, Deserialize)]
struct MoveDataset {
    primary: Option<NodeId>,
}

/// The dataset list as JSON, rendered once per revision and shared by every reader of it.
#[derive(Default)]
pub struct RenderedList {
    latest: ArcSwapOption<(u64, Bytes)>,
}

impl RenderedList {
    fn datasets(&self, snapshot: &Snapshot) -> Bytes {
        if let Some(cached) = self.latest.load().as_ref()
            && cached.0 == snapshot.revision
        {
            return cached.1.clone();
        }
        let items: Vec<_> = snapshot
            .configuration
            .datasets()
            .map(|record| &record.value)
            .collect();
        let rendered = Bytes::from(serde_json::to_vec(&items).expect("datasets serialise"));
        // Keep the newest revision if two readers render at once.
        self.latest.rcu(|old| match old {
            Some(old) if old.0 > snapshot.revision => Some(Arc::clone(old)),
            _ => Some(Arc::new((snapshot.revision, rendered.clone()))),
        });
        rendered
    }
}

async fn list_datasets(State(state): State<AppState>) -> Response {
    let snapshot = state.store.snapshot();
    let body = state.rendered.datasets(&snapshot);
    json_response(StatusCode::OK, &snapshot.tag, body)
}

async fn get_dataset(
    State(state): State<AppState>,
    Path(dataset_id): Path<String>,
) -> Result<Response, ApiError> {
    let snapshot = state.store.snapshot();
    let record = dataset_id_from_path(&dataset_id)
        .and_then(|id| snapshot.configuration.dataset(&id))
        .ok_or(ApiError::NotFound("Dataset not found."))?;
    let body = serde_json::to_vec(&record.value).expect("a dataset serialises");
    Ok(json_response(StatusCode::OK, &snapshot.tag, body.into()))
}

async fn create_dataset(
    State(state): State<AppState>,
    conditions: Conditions,
    body: RawBody,
) -> Result<Response, ApiError> {
    conditions.check_early(&state.store.snapshot())?;
    let (input, _): (CreateDataset, _) = body.decode(&schema::DATASET_CREATE)?;
    if input.deleted.is_some() {
        return Err(ApiError::BadRequest(
            "A dataset cannot be created with \"deleted\"; leave the property out.".into(),
        ));
    }
    let operation = Operation::CreateDataset {
        dataset_id: input.dataset_id.unwrap_or_else(Uuid::new_v4),
        primary: input.primary,
        metadata: input.metadata,
        maximum_size: input.maximum_size,
    };
    let committed = state.submit(conditions, operation).await?;
    log_change("dataset created", &committed);
    Ok(dataset_response(StatusCode::CREATED, committed))
}

async fn move_dataset(
    State(state): State<AppState>,
    conditions: Conditions,
    Path(dataset_id): Path<String>,
    body: RawBody,
) -> Result<Response, ApiError> {
    conditions.check_early(&state.store.snapshot())?;
    let (input, _): (MoveDataset, _) = body.decode(&schema::DATASET_UPDATE)?;
    let operation = Operation::MoveDataset {
        dataset_id: dataset_id_from_path(&dataset_id),
        primary: input.primary,
    };
    let committed = state.submit(conditions, operation).await?;
    log_change("dataset moved", &committed);
    Ok(dataset_response(StatusCode::OK, committed))
}

async fn delete_dataset(
    State(state): State<AppState>,
    conditions: Conditions,
    Path(dataset_id): Path<String>,
) -> Result<Response, ApiError> {
    let operation = Operation::DeleteDataset {
        dataset_id: dataset_id_from_path(&dataset_id),
    };
    let committed = state.submit(conditions, operation).await?;
    log_change("dataset deleted", &committed);
    Ok(dataset_response(StatusCode::OK, committed))
}

fn log_change(what: &str, committed: &Committed) {
    if let Outcome::Dataset(record) = &committed.outcome {
        tracing::info!(
            dataset_id = %record.value.dataset_id,
            primary = %record.value.primary,
            revision = committed.revision,
            "{what}"
        );
    }
}

fn dataset_response(status: StatusCode, committed: Committed) -> Response {
    let Outcome::Dataset(record) = &committed.outcome else {
        unreachable!("dataset operations answer with a dataset")
    };
    let body = serde_json::to_vec(&record.value).expect("a dataset serialises");
    json_response(status, &committed.tag, body.into())
}
