//! `floe agent`: the reference node agent. It keeps one node's datasets where the configuration
//! wants them and reports the node's state to the control service.
//!
//! Each round it reads the configuration's datasets and leases and the cluster state's
//! datasets, decides ([`converge::decide`], a pure function), mounts, releases or removes
//! datasets in its [`backend`], and reports the node with `PUT /v1/agent/nodes/{uuid}`. Then it
//! waits for the configuration or the state to change (long-polls with `Prefer: wait`), or for
//! the report interval to pass, and goes round again.
//!
//! The rules, per dataset:
//! - configured here and not deleted: mounted once no other node reports it mounted (the
//!   previous holder releases first);
//! - mounted here but moved to another node: released, unless a live lease held by a node
//!   other than the new primary pins it; a released dataset is reported once as non-manifest,
//!   then forgotten;
//! - mounted here but deleted: removed, unless any live lease pins it; absent from the
//!   configuration: released likewise.
//!
//! When the control service is unreachable the agent changes nothing, retries with capped
//! exponential backoff, and reports again as soon as it answers (a restarted service has
//! forgotten every node). On SIGINT or SIGTERM it tells the service that the node leaves.

pub mod backend;
pub mod control;
pub mod converge;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::time::Instant;
use uuid::Uuid;

use crate::config::AgentConfig;
use crate::model::dataset::node_id;
use crate::model::{DatasetId, NodeId};
use backend::Backend;
use control::{CONFIGURATION_DATASETS, Control, STATE_DATASETS, Snapshot, Waited};
use converge::{Action, Blocked, Here, Inputs};

/// The file in the state directory that holds the node's UUID.
pub const NODE_UUID_FILE: &str = "node_uuid";

/// The first retry delay after the control service fails to answer.
const FIRST_RETRY: Duration = Duration::from_millis(200);
/// The longest retry delay.
const LAST_RETRY: Duration = Duration::from_secs(5);
/// How long the goodbye at shutdown may take: shutdown must not hang on a dead service.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the agent until `shutdown` completes, then says goodbye to the control service.
/// Fails only at start-up (state directory, dataset root, HTTP client).
pub async fn run(config: &AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let tls = control::ClientTls::load(config)?;
    let node = node_identity(&config.state_dir, tls.node())?;
    let backend = Backend::open(&config.root)?;
    let here = backend.scan()?;
    let era = Uuid::new_v4();
    let control = Control::new(config.control.as_str(), node, &tls, config.token.as_deref())?;
    tracing::info!(
        node_uuid = %node,
        era = %era,
        host = %config.host,
        control = %config.control,
        client_certificate = tls.node().is_some(),
        root = %backend.root().display(),
        mounted = here.len(),
        "agent started"
    );
    let mut agent = Agent {
        node,
        era,
        host: config.host,
        backend,
        configured_interval: Duration::from_secs(config.report_interval),
        interval: Duration::from_secs(config.report_interval),
        here,
        blocked: BTreeSet::new(),
        failures: 0,
        unreachable: false,
    };
    tokio::select! {
        never = agent.run_forever(&control) => match never {},
        () = shutdown => {}
    }
    tracing::info!(node_uuid = %node, "shutdown requested; leaving the cluster");
    match control.goodbye(GOODBYE_TIMEOUT).await {
        Ok(()) => tracing::info!(node_uuid = %node, "left the cluster"),
        Err(error) => tracing::warn!(
            node_uuid = %node,
            error = %format!("{error:#}"),
            "could not tell the control service that this node leaves; it drops out when its report expires"
        ),
    }
    Ok(())
}

/// The node's UUID, kept in `<state_dir>/node_uuid`: generated (version 4) on the first start
/// and the same on every later one, as a node's identity must be. With a node certificate the
/// UUID is the one its common name carries (as in Flocker), and must agree with the file.
pub fn node_identity(state_dir: &Path, certified: Option<NodeId>) -> anyhow::Result<NodeId> {
    // The control service takes reports only from version-4 node ids (Flocker's clients read
    // every node id as one): an agent with another would be refused at every round, for ever.
    // `floe ca node` issues only version-4 ones now; earlier certificates may carry others.
    if let Some(certified) = certified
        && node_id(certified).is_err()
    {
        bail!(
            "the node certificate names node {certified}, which is not a version-4 UUID: the control service refuses reports from it. Issue this node a new certificate with `floe ca node` (it draws a version-4 UUID) and, if it is there, remove {} (the old identity) so that the node takes the new one",
            state_dir.join(NODE_UUID_FILE).display()
        );
    }
    let file = state_dir.join(NODE_UUID_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            let node = Uuid::try_parse(text.trim())
                .ok()
                .filter(|uuid| node_id(*uuid).is_ok());
            match node {
                Some(node) if certified.is_some_and(|certified| certified != node) => bail!(
                    "{} says this node is {node} but its certificate names node {}; use the certificate issued for this node, or remove the file to take the certificate's identity",
                    file.display(),
                    certified.unwrap_or_default()
                ),
                Some(node) => Ok(node),
                // Never replace an identity silently: the cluster knows the node by it.
                None => bail!(
                    "{} does not hold a version-4 UUID; fix it, or remove it to give this node a new identity",
                    file.display()
                ),
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(state_dir).with_context(|| {
                format!("cannot create the state directory {}", state_dir.display())
            })?;
            let node = certified.unwrap_or_else(Uuid::new_v4);
            // Written aside and renamed, so that a crash never leaves half an identity.
            let partial = state_dir.join(format!("{NODE_UUID_FILE}.partial"));
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                let mut out = std::fs::File::create(&partial)?;
                writeln!(out, "{node}")?;
                out.sync_all()?;
                std::fs::rename(&partial, &file)
            };
            write().with_context(|| format!("cannot write {}", file.display()))?;
            tracing::info!(node_uuid = %node, file = %file.display(), "new node identity");
            Ok(node)
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {}", file.display())),
    }
}

/// The agent's own state between rounds.
struct Agent {
    node: NodeId,
    era: Uuid,
    host: IpAddr,
    backend: Backend,
    /// The report interval asked for.
    configured_interval: Duration,
    /// The report interval in use: shortened when the service forgets nodes sooner.
    interval: Duration,
    /// What this node holds.
    here: BTreeMap<DatasetId, Here>,
    /// What was blocked last round, so that each block is logged once, when it starts.
    blocked: BTreeSet<Blocked>,
    /// Failures in a row, for the backoff.
    failures: u32,
    /// Whether the service failed since the last successful report.
    unreachable: bool,
}

impl Agent {
    async fn run_forever(&mut self, control: &Control) -> Infallible {
        loop {
            let snapshot = match self.round(control).await {
                Ok(snapshot) => snapshot,
                Err(error) => {
                    self.back_off(&error).await;
                    continue;
                }
            };
            // Lease changes change the datasets list's ETag too, so two waits cover
            // everything that can call for action; the timer keeps the node from expiring.
            let deadline = Instant::now() + self.interval;
            let configuration = snapshot.configuration.etag.as_deref();
            let state = snapshot.state.etag.as_deref();
            let waited = tokio::select! {
                waited = watch(control, CONFIGURATION_DATASETS, configuration, deadline) => waited,
                waited = watch(control, STATE_DATASETS, state, deadline) => waited,
                () = tokio::time::sleep_until(deadline) => Ok(()),
            };
            match waited {
                Ok(()) => self.failures = 0,
                Err(error) => self.back_off(&error).await,
            }
        }
    }

    /// Reads, converges and reports once; returns what it read, for the ETags to wait on.
    async fn round(&mut self, control: &Control) -> anyhow::Result<Snapshot> {
        let snapshot = control.snapshot().await?;
        let plan = converge::decide(&Inputs {
            me: self.node,
            root: self.backend.root(),
            configuration: &snapshot.configuration.items,
            leases: &snapshot.leases,
            state: &snapshot.state.items,
            here: &self.here,
        });
        self.note_blocked(plan.blocked);
        for action in plan.actions {
            self.apply(action).await;
        }
        // Built from what actually happened: an action that failed is retried next round.
        let report = converge::report(
            self.backend.root(),
            &self.here,
            &snapshot.configuration.items,
        );
        let expires = control.report(self.host, self.era, &report).await?;
        // Released datasets have now been reported once; they are no longer ours.
        self.here.retain(|_, held| *held != Here::Released);
        self.fit_interval(expires);
        if self.unreachable {
            self.unreachable = false;
            tracing::info!(
                node_uuid = %self.node,
                mounted = report.datasets.len(),
                "reconnected to the control service; node reported"
            );
        }
        Ok(snapshot)
    }

    async fn apply(&mut self, action: Action) {
        let dataset = action.dataset();
        let done = match action {
            Action::Mount(_) => self.backend.mount(dataset).await.map(|path| {
                tracing::info!(dataset_id = %dataset, path = %path.display(), "mounted dataset");
            }),
            Action::Release(_) => self.backend.unmount(dataset).await.map(|()| {
                tracing::info!(dataset_id = %dataset, "released dataset");
            }),
            Action::Remove(_) => self.backend.unmount(dataset).await.map(|()| {
                tracing::info!(dataset_id = %dataset, "removed deleted dataset");
            }),
            Action::Forget(_) => Ok(()),
        };
        match done {
            Ok(()) => action.apply(&mut self.here),
            Err(error) => tracing::error!(
                dataset_id = %dataset,
                action = ?action,
                error = %error,
                "could not change the dataset; retrying next round"
            ),
        }
    }

    /// Logs each block when it starts (not every round while it lasts).
    fn note_blocked(&mut self, blocked: Vec<Blocked>) {
        let blocked: BTreeSet<Blocked> = blocked.into_iter().collect();
        for block in blocked.difference(&self.blocked) {
            match *block {
                Blocked::Leased { dataset, holder } => tracing::info!(
                    dataset_id = %dataset,
                    lease_holder = %holder,
                    "keeping dataset: a lease forbids moving or removing it"
                ),
                Blocked::HeldElsewhere { dataset, holder } => tracing::info!(
                    dataset_id = %dataset,
                    holder = %holder,
                    "waiting for another node to release dataset"
                ),
            }
        }
        self.blocked = blocked;
    }

    /// Reports at least twice per expiry period, whatever interval was asked for, so that
    /// one late report never drops the node.
    fn fit_interval(&mut self, expires: Duration) {
        let fitted = if !expires.is_zero() && self.configured_interval * 2 > expires {
            (expires / 2).max(Duration::from_millis(100))
        } else {
            self.configured_interval
        };
        if fitted != self.interval {
            tracing::warn!(
                asked = ?self.configured_interval,
                node_expiry = ?expires,
                using = ?fitted,
                "the report interval is too long for the control service's node expiry"
            );
            self.interval = fitted;
        }
    }

    /// Logs a failure and sleeps before the next try, longer after each failure in a row.
    async fn back_off(&mut self, error: &anyhow::Error) {
        self.failures = self.failures.saturating_add(1);
        self.unreachable = true;
        let doubled = FIRST_RETRY.saturating_mul(1 << (self.failures - 1).min(16));
        // A little jitter, so that agents cut off together do not all return at once.
        let delay = doubled
            .min(LAST_RETRY)
            .mul_f64(rand::random_range(0.8..1.2));
        let retry_in = format!("{:.1}", delay.as_secs_f64());
        let unreachable = is_unreachable(error);
        let error = format!("{error:#}");
        if unreachable {
            tracing::warn!(%error, "control service unreachable — retrying in {retry_in} s");
        } else {
            tracing::warn!(%error, "control service gave an unusable answer — retrying in {retry_in} s");
        }
        tokio::time::sleep(delay).await;
    }
}

/// Whether a failure means the service could not be reached at all, rather than answered
/// something the agent could not use.
fn is_unreachable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<reqwest::Error>()
            .is_some_and(|e| e.is_connect() || e.is_timeout() || e.is_request() || e.is_body())
    })
}

/// How long the agent pauses before asking again after a wait answered at once.
const EARLY_ANSWER_PAUSE: Duration = Duration::from_secs(5);

/// Completes when the list at `path` changes from `etag`, or never (the round's timer ends the
/// wait) when the service sends no ETags. Fails when the service cannot be asked. A service
/// that answers at once is asked again every [`EARLY_ANSWER_PAUSE`].
async fn watch(
    control: &Control,
    path: &str,
    etag: Option<&str>,
    deadline: Instant,
) -> anyhow::Result<()> {
    let Some(etag) = etag else {
        return std::future::pending().await;
    };
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait < Duration::from_millis(500) {
            return std::future::pending().await;
        }
        let asked = Instant::now();
        match control.wait_for_change(path, etag, wait).await? {
            Waited::Changed => return Ok(()),
            // A service that caps waits below ours answers early: ask again for the rest.
            Waited::Unchanged if asked.elapsed() * 2 >= wait => continue,
            // Answered at once: a service that is stopping (it releases the requests it holds)
            // or one that does not hold requests. Ask again after a pause, not at the end of
            // the round: a stopped service then shows as an error within the pause, and a
            // restarted one (which has forgotten every node) as a change, so the node is
            // reported again within seconds rather than a report interval.
            Waited::Unchanged => {
                tokio::time::sleep(EARLY_ANSWER_PAUSE.min(wait)).await;
            }
        }
    }
}
