//! `/v1/configuration/datasets`: Flocker's dataset configuration (list, create, read, move,
//! delete). Every write may be made conditional on the configuration tag, on the dataset's
//! ETag, and made retry-safe with an idempotency key.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use uuid::Uuid;

use super::answer::Answer;
use super::body::WriteRequest;
use super::conditional::{Conditions, record_headers};
use super::segment::Segment;
use super::{ApiError, AppState, Render, list_answer};
use crate::model::dataset::dataset_id_from_path;
use crate::model::schema;
use crate::model::{Collection, Metadata, NodeId, Operation, Outcome, Target};
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
    maximum_size: Option<std::num::NonZeroU64>,
    deleted: Option<bool>,
}

/// The body of a move.
#[derive(Debug, Deserialize)]
struct MoveDataset {
    primary: Option<NodeId>,
}

/// The dataset list as JSON, rendered once per change to it and shared by every reader.
#[derive(Default)]
pub struct RenderedList {
    latest: ArcSwapOption<(u64, Bytes)>,
}

impl RenderedList {
    fn datasets(&self, snapshot: &Snapshot) -> Bytes {
        let version = snapshot.lists.revision(Collection::Datasets);
        if let Some(cached) = self.latest.load().as_ref()
            && cached.0 == version
        {
            return cached.1.clone();
        }
        // Each dataset's representation is its canonical form, already rendered at write time.
        let size: usize = snapshot
            .configuration
            .datasets()
            .map(|record| record.canonical.len() + 1)
            .sum();
        let mut list = Vec::with_capacity(size + 2);
        list.push(b'[');
        for (index, record) in snapshot.configuration.datasets().enumerate() {
            if index > 0 {
                list.push(b',');
            }
            list.extend_from_slice(&record.canonical);
        }
        list.push(b']');
        let rendered = Bytes::from(list);
        // Keep the newest version if two readers render at once.
        self.latest.rcu(|old| match old {
            Some(old) if old.0 > version => Some(Arc::clone(old)),
            _ => Some(Arc::new((version, rendered.clone()))),
        });
        rendered
    }
}

/// The list's ETag is the configuration tag of the last change to a dataset: it changes
/// exactly when the list does. With `Prefer: wait=N` and a current `If-None-Match`, the
/// request waits for that change.
async fn list_datasets(State(state): State<AppState>, conditions: Conditions) -> Response {
    state.hold_for_list(&conditions, Collection::Datasets).await;
    dataset_list(&state, &conditions)
}

fn dataset_list(state: &AppState, conditions: &Conditions) -> Response {
    let snapshot = state.store.read();
    list_answer(
        conditions,
        snapshot.lists.tag(Collection::Datasets).as_str(),
        Some(&snapshot.tag),
        || state.rendered.datasets(&snapshot),
    )
}

async fn get_dataset(
    State(state): State<AppState>,
    conditions: Conditions,
    Segment(dataset_id): Segment,
) -> Result<Response, ApiError> {
    one_dataset(&state, &conditions, &dataset_id)
}

fn one_dataset(
    state: &AppState,
    conditions: &Conditions,
    dataset_id: &str,
) -> Result<Response, ApiError> {
    let snapshot = state.store.read();
    let record = dataset_id_from_path(dataset_id)
        .and_then(|id| snapshot.configuration.dataset(&id))
        .ok_or(ApiError::NotFound("Dataset not found."))?;
    conditions.read_record(record, &snapshot.tag, || {
        Ok(Answer::json(StatusCode::OK, record.canonical.clone()))
    })
}

/// Answers the two reads that agents and clients poll hardest, a GET of the dataset list and
/// of one dataset, straight from the snapshot, as their handlers above would; `None` for
/// anything else, and for the rarer shapes of these two (a percent-encoded id, a malformed
/// validator, a list read that asks to wait), which the router then serves.
pub(super) fn hot_read(state: &AppState, request: &Request) -> Option<Response> {
    if request.method() != Method::GET {
        return None;
    }
    let rest = request
        .uri()
        .path()
        .strip_prefix("/v1/configuration/datasets")?;
    // The list, or one segment exactly as sent: percent-encoding is the router's to decode.
    let dataset_id = match rest.strip_prefix('/') {
        None if rest.is_empty() => None,
        Some(id) if !id.is_empty() && !id.contains(['/', '%']) => Some(id),
        _ => return None,
    };
    let conditions =
        Conditions::from_headers(request.headers(), request.method(), state.settings.if_match)
            .ok()?;
    match dataset_id {
        None => conditions
            .wait
            .is_none()
            .then(|| dataset_list(state, &conditions)),
        Some(id) => {
            Some(one_dataset(state, &conditions, id).unwrap_or_else(IntoResponse::into_response))
        }
    }
}

async fn create_dataset(
    State(state): State<AppState>,
    conditions: Conditions,
    request: WriteRequest,
) -> Result<Response, ApiError> {
    state
        .write(conditions, &request, |request| {
            let input: CreateDataset = request.decode(&schema::DATASET_CREATE)?;
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
            Ok((
                operation,
                dataset_answer(StatusCode::CREATED, "dataset created"),
            ))
        })
        .await
}

async fn move_dataset(
    State(state): State<AppState>,
    conditions: Conditions,
    Segment(dataset_id): Segment,
    request: WriteRequest,
) -> Result<Response, ApiError> {
    // `None` for a path that names no valid id, which finds no dataset.
    let dataset_id = dataset_id_from_path(&dataset_id);
    state
        .write(
            conditions.aimed_at(dataset_id.map(Target::Dataset)),
            &request,
            |request| {
                let input: MoveDataset = request.decode(&schema::DATASET_UPDATE)?;
                let operation = Operation::MoveDataset {
                    dataset_id,
                    primary: input.primary,
                };
                Ok((operation, dataset_answer(StatusCode::OK, "dataset moved")))
            },
        )
        .await
}

async fn delete_dataset(
    State(state): State<AppState>,
    conditions: Conditions,
    Segment(dataset_id): Segment,
    request: WriteRequest,
) -> Result<Response, ApiError> {
    state
        .write(conditions, &request, |_| {
            let operation = Operation::DeleteDataset {
                dataset_id: dataset_id_from_path(&dataset_id),
            };
            Ok((operation, dataset_answer(StatusCode::OK, "dataset deleted")))
        })
        .await
}

/// Renders the dataset a write left, with its ETag (which [`AppState::write`] takes off when
/// ETags are off), and logs the change.
fn dataset_answer(status: StatusCode, what: &'static str) -> Render {
    Box::new(move |committed: &Committed| {
        let Outcome::Dataset(record) = &committed.outcome else {
            unreachable!("dataset operations answer with a dataset")
        };
        tracing::debug!(
            dataset_id = %record.value.dataset_id,
            primary = %record.value.primary,
            revision = committed.revision,
            "{what}"
        );
        let mut answer = Answer::json(status, record.canonical.clone()).with_tag(&committed.tag);
        record_headers(&mut answer.headers, record);
        answer
    })
}
