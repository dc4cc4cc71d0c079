//! `/v1/state/datasets` and `/v1/state/nodes...`: the cluster's actual state as agents report
//! it (Flocker §2.6–2.8), and `/v1/agent/nodes/{node_uuid}`, floe's own API through which
//! agents report it. (`/v1/state/containers` is served with the containers.)

use std::net::IpAddr;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, put};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::body::WriteRequest;
use super::conditional::Conditions;
use super::containers::ContainerBody;
use super::segment::Segment;
use super::{ApiError, AppState, list_answer};
use crate::model::cluster::{MountedDataset, NodeReport, RunningContainer, SeenDataset};
use crate::model::dataset::parse_node_id;
use crate::model::{NodeId, schema};

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/state/datasets", get(list_state_datasets))
        .route("/v1/state/nodes", get(list_nodes))
        .route("/v1/state/nodes/by_era/{era}", get(node_by_era))
        .route(
            "/v1/agent/nodes/{node_uuid}",
            put(report_node).delete(forget_node),
        )
}

/// An agent's report as it arrives.
#[derive(Debug, Deserialize)]
struct ReportBody {
    host: String,
    era: Uuid,
    datasets: Vec<MountedDataset>,
    nonmanifest_datasets: Vec<SeenDataset>,
    #[serde(default)]
    containers: Vec<ContainerBody>,
}

/// Holds a state list request that asks to wait (see [`super::waiting`]) until the cluster
/// state changes.
pub(super) async fn hold_for_state(state: &AppState, conditions: &Conditions) {
    state
        .waits
        .hold_while_unchanged(
            conditions,
            || state.cluster.subscribe(),
            || state.cluster.view().tag.clone(),
        )
        .await;
}

async fn list_state_datasets(State(state): State<AppState>, conditions: Conditions) -> Response {
    hold_for_state(&state, &conditions).await;
    let view = state.cluster.view();
    list_answer(&conditions, &view.tag, None, || {
        serde_json::to_vec(&view.state.datasets()).expect("JSON")
    })
}

async fn list_nodes(State(state): State<AppState>, conditions: Conditions) -> Response {
    hold_for_state(&state, &conditions).await;
    let view = state.cluster.view();
    list_answer(&conditions, &view.tag, None, || {
        let nodes: Vec<Value> = view
            .state
            .nodes()
            .map(|node| json!({ "host": node.report.host.to_string(), "uuid": node.uuid }))
            .collect();
        serde_json::to_vec(&nodes).expect("JSON")
    })
}

async fn node_by_era(
    State(state): State<AppState>,
    Segment(era): Segment,
) -> Result<Json<Value>, ApiError> {
    // Flocker crashed on a non-UUID era; it is a bad request.
    let era = Uuid::try_parse(&era)
        .map_err(|_| ApiError::BadRequest(format!("The era must be a UUID, not {era:?}.")))?;
    let node = state
        .cluster
        .view()
        .state
        .node_by_era(&era)
        .ok_or(ApiError::NotFound("No node found with given era."))?;
    Ok(Json(json!({ "uuid": node })))
}

/// An agent reports its node's whole state; it replaces the previous report and keeps the
/// node alive for `--node-expiry`.
async fn report_node(
    State(state): State<AppState>,
    Segment(node_uuid): Segment,
    request: WriteRequest,
) -> Result<Json<Value>, ApiError> {
    let node = parse_node(&node_uuid)?;
    let body: ReportBody = request.decode(&schema::AGENT_REPORT)?;
    let host: IpAddr = body.host.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "\"host\" must be the node's IP address, not {:?}.",
            body.host
        ))
    })?;
    let report = NodeReport {
        host,
        era: body.era,
        datasets: body.datasets,
        nonmanifest_datasets: body.nonmanifest_datasets,
        containers: body
            .containers
            .into_iter()
            .map(|reported| {
                Ok(RunningContainer {
                    running: reported.running.unwrap_or(false),
                    container: reported.into_container(node)?,
                })
            })
            .collect::<Result<_, ApiError>>()?,
    };
    if let Some(twice) = report.dataset_named_twice() {
        return Err(ApiError::BadRequest(format!(
            "Dataset {twice} is reported more than once in one list."
        )));
    }
    tracing::debug!(%node, era = %report.era, datasets = report.datasets.len(), "node reported");
    state.cluster.report(node, report);
    let expiry = state.cluster.expiry().as_secs();
    Ok(Json(json!({ "node_uuid": node, "expires_in": expiry })))
}

/// An agent that stops says so, and its node leaves the state at once.
async fn forget_node(
    State(state): State<AppState>,
    Segment(node_uuid): Segment,
) -> Result<StatusCode, ApiError> {
    let node = parse_node(&node_uuid)?;
    if state.cluster.forget(&node) {
        tracing::info!(%node, "node left");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("Node not found."))
    }
}

/// Node ids must be version-4 UUIDs (Flocker's Python client forces the version bits).
fn parse_node(text: &str) -> Result<NodeId, ApiError> {
    parse_node_id(text).map_err(|error| ApiError::BadRequest(error.to_string()))
}
