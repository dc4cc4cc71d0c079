//! `/v1/configuration/containers` and `/v1/state/containers`: Flocker's legacy container API,
//! with its exact validation, normalisation and error order.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::answer::Answer;
use super::body::WriteRequest;
use super::conditional::{Conditions, record_headers};
use super::segment::Segment;
use super::{ApiError, AppState, Render, list_answer};
use crate::model::container::{Container, Link, Port, RestartPolicy, Volume, normalise_image};
use crate::model::{Collection, NodeId, Operation, Outcome, Target, schema};
use crate::store::Committed;

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/configuration/containers",
            get(list_containers).post(create_container),
        )
        .route(
            "/v1/configuration/containers/{name}",
            post(move_container).delete(delete_container),
        )
        .route("/v1/state/containers", get(list_container_state))
}

/// A container as clients send it (and agents report it, with `running`).
#[derive(Debug, Deserialize)]
pub struct ContainerBody {
    node_uuid: Option<NodeId>,
    name: String,
    image: String,
    #[serde(default)]
    ports: Vec<Port>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    restart_policy: RestartPolicy,
    command_line: Option<Vec<String>>,
    swappiness: Option<u8>,
    #[serde(default)]
    volumes: Vec<Volume>,
    cpu_shares: Option<u32>,
    memory_limit: Option<u64>,
    #[serde(default)]
    links: Vec<Link>,
    /// Only in agents' reports.
    pub running: Option<bool>,
}

impl ContainerBody {
    /// The container, on `node` unless the body names one.
    pub fn into_container(self, node: NodeId) -> Result<Container, ApiError> {
        let image = normalise_image(&self.image).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{:?} is not an image name: the repository and the tag must not be empty.",
                self.image
            ))
        })?;
        Ok(Container {
            node_uuid: self.node_uuid.unwrap_or(node),
            name: self.name,
            image,
            restart_policy: self.restart_policy,
            ports: self.ports.into_iter().collect(),
            links: self.links,
            environment: self.environment,
            volume: self.volumes.into_iter().next(),
            cpu_shares: self.cpu_shares,
            memory_limit: self.memory_limit,
            command_line: self.command_line,
            swappiness: self.swappiness,
        })
    }
}

/// The body of a move.
#[derive(Debug, Deserialize)]
struct MoveContainer {
    node_uuid: NodeId,
}

/// A container as Flocker shows it: `ports`, `links` and `environment` only when not empty,
/// the volume as a one-item `volumes` list, and never `swappiness`.
pub fn render(container: &Container) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("node_uuid".into(), json!(container.node_uuid));
    object.insert("name".into(), json!(container.name));
    object.insert("image".into(), json!(container.image));
    object.insert("restart_policy".into(), json!(container.restart_policy));
    if !container.ports.is_empty() {
        object.insert("ports".into(), json!(container.ports));
    }
    if !container.links.is_empty() {
        object.insert("links".into(), json!(container.links));
    }
    if !container.environment.is_empty() {
        object.insert("environment".into(), json!(container.environment));
    }
    if let Some(volume) = &container.volume {
        object.insert("volumes".into(), json!([volume]));
    }
    if let Some(cpu_shares) = container.cpu_shares {
        object.insert("cpu_shares".into(), json!(cpu_shares));
    }
    if let Some(memory_limit) = container.memory_limit {
        object.insert("memory_limit".into(), json!(memory_limit));
    }
    if let Some(command_line) = &container.command_line {
        object.insert("command_line".into(), json!(command_line));
    }
    object
}

async fn list_containers(State(state): State<AppState>, conditions: Conditions) -> Response {
    state
        .hold_for_list(&conditions, Collection::Containers)
        .await;
    let snapshot = state.store.read();
    let items: Vec<Value> = snapshot
        .configuration
        .containers()
        .map(|record| Value::Object(render(&record.value)))
        .collect();
    list_answer(
        &conditions,
        snapshot.lists.tag(Collection::Containers).as_str(),
        Some(&snapshot.tag),
        || serde_json::to_vec(&items).expect("JSON"),
    )
}

async fn list_container_state(State(state): State<AppState>, conditions: Conditions) -> Response {
    super::state::hold_for_state(&state, &conditions).await;
    let view = state.cluster.view();
    let items: Vec<Value> = view
        .state
        .nodes()
        .flat_map(|node| {
            node.report.containers.iter().map(|reported| {
                let mut object = render(&reported.container);
                object.insert("running".into(), json!(reported.running));
                Value::Object(object)
            })
        })
        .collect();
    list_answer(&conditions, &view.tag, None, || {
        serde_json::to_vec(&items).expect("JSON")
    })
}

async fn create_container(
    State(state): State<AppState>,
    conditions: Conditions,
    request: WriteRequest,
) -> Result<Response, ApiError> {
    state
        .write(conditions, &request, |request| {
            let body: ContainerBody = request.decode(&schema::CONTAINER_CREATE)?;
            // The schema requires it; should the two ever disagree, this is still a 400.
            let node = body.node_uuid.ok_or_else(|| {
                ApiError::Schema(vec!["\"node_uuid\" is a required property".into()])
            })?;
            let operation = Operation::CreateContainer(body.into_container(node)?);
            Ok((
                operation,
                container_answer(StatusCode::CREATED, "container created"),
            ))
        })
        .await
}

async fn move_container(
    State(state): State<AppState>,
    conditions: Conditions,
    Segment(name): Segment,
    request: WriteRequest,
) -> Result<Response, ApiError> {
    let target = Some(Target::Container(name.clone()));
    state
        .write(conditions.aimed_at(target), &request, |request| {
            let body: MoveContainer = request.decode(&schema::CONTAINER_MOVE)?;
            let operation = Operation::MoveContainer {
                name,
                node_uuid: body.node_uuid,
            };
            Ok((
                operation,
                container_answer(StatusCode::OK, "container moved"),
            ))
        })
        .await
}

/// Deleting answers `null`, as Flocker does.
async fn delete_container(
    State(state): State<AppState>,
    conditions: Conditions,
    Segment(name): Segment,
    request: WriteRequest,
) -> Result<Response, ApiError> {
    state
        .write(conditions, &request, |_| {
            let render: Render = Box::new(|committed: &Committed| {
                if let Outcome::Container(record) = &committed.outcome {
                    tracing::debug!(name = %record.value.name, revision = committed.revision, "container deleted");
                }
                Answer::json(StatusCode::OK, &b"null"[..]).with_tag(&committed.tag)
            });
            Ok((Operation::DeleteContainer { name }, render))
        })
        .await
}

/// Renders the container a write left, with its ETag (which [`AppState::write`] takes off
/// when ETags are off), and logs the change. Flocker has no GET of one container, so a
/// write's answer (or a 412's) is where a client learns the tag to send back in `If-Match`.
fn container_answer(status: StatusCode, what: &'static str) -> Render {
    Box::new(move |committed: &Committed| {
        let Outcome::Container(record) = &committed.outcome else {
            unreachable!("container operations answer with a container")
        };
        tracing::debug!(name = %record.value.name, node_uuid = %record.value.node_uuid, revision = committed.revision, "{what}");
        let body = serde_json::to_vec(&render(&record.value)).expect("JSON");
        let mut answer = Answer::json(status, body).with_tag(&committed.tag);
        record_headers(&mut answer.headers, record);
        answer
    })
}
