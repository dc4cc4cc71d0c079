//! Every setting, as a command-line flag that can also be given as a `FLOE_*` environment
//! variable. `floe --help`, `floe serve --help` and `floe agent --help` are the reference.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::api::ApiSettings;
use crate::api::conditional::IfMatchPolicy;
use crate::api::meta::{self, MetaFields};
use crate::store::{Backend, DEFAULT_IDEMPOTENCY_MAX_KEYS, StoreOptions};

/// Where the data lives unless `--data-dir` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "./floe-data";
/// `--idempotency-ttl`'s default: a day.
pub const DEFAULT_IDEMPOTENCY_TTL_SECONDS: u64 = 86_400;
/// `--node-expiry`'s default.
pub const DEFAULT_NODE_EXPIRY_SECONDS: u64 = 120;
/// `--max-wait`'s default.
pub const DEFAULT_MAX_WAIT_SECONDS: u64 = 300;
/// `--header-read-timeout`'s default.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECONDS: u64 = 30;
/// `--body-read-timeout`'s default.
pub const DEFAULT_BODY_READ_TIMEOUT_SECONDS: u64 = 30;

/// floe: a cluster configuration service speaking Flocker's control API, with concurrency done
/// right.
#[derive(Debug, Parser)]
#[command(name = "floe", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control service.
    Serve(ServeConfig),
    /// Run the reference node agent: keep this node's datasets where the configuration wants
    /// them (one directory per dataset) and report the node to the control service.
    Agent(AgentConfig),
    /// Manage the cluster's certificate authority and issue certificates, like Flocker's
    /// flocker-ca and in its file layout.
    Ca(CaArgs),
    /// Take over a Flocker cluster: load its `current_configuration.json` into an empty store.
    ///
    /// Reads Flocker's control service file (format version 6, or any older one back to 1);
    /// then start `floe serve` with the same --data-dir. Every dataset (deleted ones included,
    /// with metadata and maximum size), every lease
    /// (with its expiry) and every application (as a container) is imported in one
    /// transaction, checked as the API checks them; if anything is refused, nothing is
    /// imported. The store must hold no dataset, lease or container: an import takes over a
    /// cluster, it does not merge into one. It cannot run while a floe server uses the data
    /// directory. Stop Flocker's control service first, so the file no longer changes.
    #[command(name = "import-flocker")]
    ImportFlocker(ImportFlockerArgs),
    /// Issue a new token for a user (default `admin`) and write it to `admin-token` in
    /// --data-dir (mode 0600), replacing the file: for when the administrator's token was lost
    /// or revoked. Nobody knows the first administrator's password, so this is the way back
    /// in. Stop `floe serve` first: the server reads its accounts when it starts, and holds
    /// the data directory while it runs.
    #[command(name = "admin-token")]
    AdminToken(AdminTokenArgs),
    /// Write a consistent copy of the store to a new file, while `floe serve` runs or not.
    ///
    /// The copy holds every change committed before it began, WAL included, in one
    /// self-contained SQLite file (mode 0600: it holds password hashes and token digests),
    /// checked once written. Put it back with `floe restore`.
    Backup(BackupArgs),
    /// Replace the store in --data-dir with a backup made by `floe backup`.
    ///
    /// Stop `floe serve` first: the data directory must not be in use. The backup is checked
    /// before anything changes. The database it replaces is kept beside it as
    /// `floe.db.before-restore-<time>` (its WAL folded in first), and no WAL of it is left for
    /// SQLite to apply to the backup. Until the last step, a rename, the old store is as it
    /// was: a crash leaves it or the backup, never a mix. Tokens issued after the backup was taken no longer work;
    /// `floe admin-token` issues a new one. Clients' configuration tags change on the next
    /// start, as on every start.
    Restore(RestoreArgs),
    /// Print the OpenAPI 3.1 document `floe serve` answers at GET /openapi.json, to generate a
    /// client or browse the API without a running server.
    Openapi(OpenapiArgs),
}

/// Settings of `floe openapi`.
#[derive(Debug, Clone, Args)]
pub struct OpenapiArgs {
    /// The document of a server with authentication `token` (operations need credentials) or
    /// `none` (every operation is public).
    #[arg(long, value_enum, default_value_t = AuthMode::Token)]
    pub auth: AuthMode,
}

/// Settings of `floe backup`.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The file to write; it must not exist.
    pub file: PathBuf,

    /// The data directory of the store to copy.
    #[arg(long, env = "FLOE_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

/// Settings of `floe restore`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup to put back.
    pub file: PathBuf,

    /// The data directory of the stopped server (created if missing).
    #[arg(long, env = "FLOE_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

/// Settings of `floe admin-token`.
#[derive(Debug, Clone, Args)]
pub struct AdminTokenArgs {
    /// The data directory of the stopped server.
    #[arg(long, env = "FLOE_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// Whose token to issue.
    #[arg(long, default_value = "admin")]
    pub user: String,
}

/// Settings of `floe import-flocker`.
#[derive(Debug, Clone, Args)]
pub struct ImportFlockerArgs {
    /// Flocker's configuration file, usually `/var/lib/flocker/current_configuration.json`.
    pub file: PathBuf,

    /// Directory holding the configuration database (created if missing): the --data-dir the
    /// server will be started with.
    #[arg(long, env = "FLOE_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// Log line format on standard error. The level is set with RUST_LOG (default `info`).
    #[arg(long, env = "FLOE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Settings of `floe ca`.
#[derive(Debug, Clone, Args)]
pub struct CaArgs {
    /// The directory holding `cluster.crt`/`cluster.key`, where new files are written.
    #[arg(long, env = "FLOE_CA_DIR", default_value = ".", global = true)]
    pub dir: PathBuf,

    /// What to make.
    #[command(subcommand)]
    pub command: CaCommand,
}

/// The `floe ca` subcommands. Keys are written with mode 0600; no file is ever overwritten.
#[derive(Debug, Clone, Subcommand)]
pub enum CaCommand {
    /// Create a new CA: `cluster.crt` and `cluster.key` (CN = NAME, OU = a new cluster UUID).
    Init {
        /// The cluster's name.
        name: String,
    },
    /// Issue the control service's certificate: `control-HOSTNAME.crt/.key`, valid for
    /// `control-service` and HOSTNAME (a DNS name or an IP address).
    Control {
        /// The name or IP address clients use to reach the control service.
        hostname: String,
    },
    /// Issue a node agent's certificate: `UUID.crt/.key` with CN `node-UUID`.
    Node {
        /// The node's UUID, of version 4 (the only kind the control service accepts); a new
        /// one when omitted.
        uuid: Option<uuid::Uuid>,
    },
    /// Issue an API user's certificate: `NAME.crt/.key` with CN `user-NAME`.
    User {
        /// The user's name.
        name: String,
    },
}

/// Settings of `floe serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address and port to listen on. Port 0 picks a free port. Plain HTTP (no --tls-cert)
    /// is refused on any address but loopback unless --insecure is given.
    #[arg(long, env = "FLOE_LISTEN", default_value = "127.0.0.1:4523", value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// Serve HTTPS with this certificate chain (PEM, leaf first), e.g. the
    /// `control-HOST.crt` made by `floe ca control HOST`.
    #[arg(long, env = "FLOE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "FLOE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Require client certificates signed by this CA (PEM, e.g. `cluster.crt`). The subject
    /// common name decides who the client is: `user-NAME` is an API user, `node-UUID` is the
    /// agent of that node (which may only report that node); any other is refused.
    #[arg(long, env = "FLOE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Allow plain HTTP on a non-loopback address (anyone who can reach it can change the
    /// configuration). FLOE_INSECURE takes true/false, yes/no, on/off or 1/0.
    // Boolish: an environment variable is often set to 1 or yes, which clap's default parser
    // for a flag refuses (it takes only true or false).
    #[arg(long, env = "FLOE_INSECURE", value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure: bool,

    /// Directory holding the configuration database (created if missing).
    #[arg(long, env = "FLOE_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// Where the configuration is kept: `sqlite` (durable, in --data-dir) or `memory`
    /// (lost when floe stops).
    #[arg(long, env = "FLOE_STORE", value_enum, default_value_t = StoreKind::Sqlite)]
    pub store: StoreKind,

    /// Log line format on standard error. The level is set with RUST_LOG (default `info`).
    #[arg(long, env = "FLOE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Entity tags: `off` (none sent, If-Match/If-None-Match ignored), `optional` (sent and
    /// honoured; clients decide) or `required` (writes to an existing resource without
    /// If-Match or X-If-Configuration-Matches are refused with 428).
    #[arg(long, env = "FLOE_IF_MATCH", value_enum, default_value_t = IfMatchPolicy::Optional)]
    pub if_match: IfMatchPolicy,

    /// How long the answer to a request with an Idempotency-Key is kept for retries, in
    /// seconds, unless --idempotency-max-keys forgets it earlier.
    #[arg(long, env = "FLOE_IDEMPOTENCY_TTL", default_value_t = DEFAULT_IDEMPOTENCY_TTL_SECONDS, value_parser = clap::value_parser!(u64).range(1..))]
    pub idempotency_ttl: u64,

    /// How many Idempotency-Key answers are kept at most. When recording another would
    /// exceed it, the oldest are forgotten before --idempotency-ttl (and a warning is
    /// logged), so a retry is recognised for less long. An answer under a 255-character key
    /// takes about 1 KB of memory: the default holds some 250 MB.
    #[arg(long, env = "FLOE_IDEMPOTENCY_MAX_KEYS", default_value_t = DEFAULT_IDEMPOTENCY_MAX_KEYS, value_parser = parse_max_keys)]
    pub idempotency_max_keys: usize,

    /// Seconds after which a node whose agent has not reported drops out of the state.
    #[arg(long, env = "FLOE_NODE_EXPIRY", default_value_t = DEFAULT_NODE_EXPIRY_SECONDS, value_parser = clap::value_parser!(u64).range(1..))]
    pub node_expiry: u64,

    /// The longest, in seconds, a list request may wait for a change (`Prefer: wait=N` with
    /// `If-None-Match`); longer waits are cut to this.
    #[arg(long, env = "FLOE_MAX_WAIT", default_value_t = DEFAULT_MAX_WAIT_SECONDS)]
    pub max_wait: u64,

    /// Threads that serve connections, each keeping its connections for their whole life
    /// (default: one per CPU this process may use). Accepting connections and writing to the
    /// store happen on threads of their own.
    #[arg(long, env = "FLOE_WORKERS")]
    pub workers: Option<NonZeroUsize>,

    /// Seconds a client has to send a request's line and headers, counted from when the
    /// connection opened or last sent something; after that it is closed. A client that sends
    /// its headers slowly (or never) cannot hold a connection open, and keep-alive connections
    /// idle that long are closed too. A request held by `Prefer: wait` is not affected. Put a
    /// proxy's idle timeout below this.
    #[arg(long, env = "FLOE_HEADER_READ_TIMEOUT", default_value_t = DEFAULT_HEADER_READ_TIMEOUT_SECONDS, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout: u64,

    /// Seconds a client has to send a request's body once its headers are in; after that the
    /// request is answered 408 and the connection closed, so a client that stops halfway
    /// through a body cannot hold a connection open.
    #[arg(long, env = "FLOE_BODY_READ_TIMEOUT", default_value_t = DEFAULT_BODY_READ_TIMEOUT_SECONDS, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout: u64,

    /// The URL clients reach this server by, when it is not the one floe sees: behind a
    /// reverse proxy that terminates TLS or serves floe under a path. Absolute links (a
    /// mathematician's self link and `Location`) then start with it, instead of the scheme
    /// floe serves and the request's `Host`. For example `https://floe.example.com/config`.
    #[arg(long, env = "FLOE_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,

    /// Authentication: `token` (users, permissions and tokens; on first start an `admin`
    /// user is created and its token written to `admin-token` in --data-dir) or `none`
    /// (everyone may do everything; refused unless --listen is a loopback address).
    #[arg(long, env = "FLOE_AUTH", value_enum, default_value_t = AuthMode::Token)]
    pub auth: AuthMode,

    /// Name of the body field that carries a resource's entity tag, in representations that
    /// carry meta fields.
    #[arg(long, env = "FLOE_META_ETAG_FIELD", default_value = meta::DEFAULT_ETAG_FIELD)]
    pub meta_etag_field: String,

    /// Name of the body field that carries a resource's creation time (RFC 3339).
    #[arg(long, env = "FLOE_META_CREATED_FIELD", default_value = meta::DEFAULT_CREATED_FIELD)]
    pub meta_created_field: String,

    /// Name of the body field that carries a resource's last change time (RFC 3339).
    #[arg(long, env = "FLOE_META_UPDATED_FIELD", default_value = meta::DEFAULT_UPDATED_FIELD)]
    pub meta_updated_field: String,
}

/// Settings of `floe agent`.
#[derive(Debug, Clone, Args)]
pub struct AgentConfig {
    /// The control service's base URL, e.g. `https://control.example:4523`.
    #[arg(long, env = "FLOE_AGENT_CONTROL", value_parser = parse_control_url)]
    pub control: reqwest::Url,

    /// The token the agent presents (as `Authorization: Bearer`) when the control service
    /// authenticates; its user needs `nodes->_->report` and read permissions.
    // hide_env_values: `--help` would otherwise print the token set in FLOE_AGENT_TOKEN.
    #[arg(long, env = "FLOE_AGENT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// The IP address this node reports as its host (an IP literal, not a name).
    #[arg(long, env = "FLOE_AGENT_HOST")]
    pub host: IpAddr,

    /// Directory where the agent keeps the node's identity (created if missing). The node
    /// UUID is generated on the first start and reused on every later one.
    #[arg(long, env = "FLOE_AGENT_STATE_DIR", default_value = "./floe-agent")]
    pub state_dir: PathBuf,

    /// The dataset backend: a dataset mounted on this node is a directory named after it
    /// under this directory (created if missing).
    #[arg(long, env = "FLOE_AGENT_ROOT", default_value = "./floe-datasets")]
    pub root: PathBuf,

    /// Seconds between reports when nothing changes (a change is reported at once); 1 to
    /// 86,400.
    #[arg(long, env = "FLOE_AGENT_REPORT_INTERVAL", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub report_interval: u64,

    /// This node's certificate (PEM), presented to the control service, e.g. the `UUID.crt`
    /// made by `floe ca node`. Its common name `node-UUID` is the node's identity. Needs
    /// --tls-ca.
    #[arg(long, env = "FLOE_AGENT_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "FLOE_AGENT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Trust only this CA (PEM, e.g. `cluster.crt`) for the control service's certificate,
    /// instead of the system's roots.
    #[arg(long, env = "FLOE_AGENT_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// Log line format on standard error. The level is set with RUST_LOG (default `info`).
    #[arg(long, env = "FLOE_AGENT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// An `http` or `https` URL with a host; `what` ends the refusal (" of the control service").
fn http_url(text: &str, what: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.has_host() => Ok(url),
        _ => Err(format!("expected an http:// or https:// URL{what}")),
    }
}

/// The agent's `--control`.
fn parse_control_url(text: &str) -> Result<reqwest::Url, String> {
    http_url(text, " of the control service")
}

/// `--public-url`: an `http` or `https` URL with a host and nothing after its path, kept
/// without a trailing slash so that a link's path can follow it.
fn parse_public_url(text: &str) -> Result<String, String> {
    let url = http_url(text, ", such as https://floe.example.com")?;
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err("expected a URL without user name, query or fragment".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// `--listen`: an IP address and a port. A host name is refused with an example, rather than
/// with the standard library's bare "invalid socket address syntax".
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        "must be an IP address and a port, such as 127.0.0.1:4523, 0.0.0.0:4523 or [::1]:4523 \
         (host names are not looked up)"
            .to_string()
    })
}

/// A cap on recorded answers: at least one, since a cap of none would recognise no retry.
fn parse_max_keys(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err(
            "must be at least 1 (0 would keep no answer, so no retry would be \
                      recognised)"
                .into(),
        ),
        Ok(cap) => Ok(cap),
        Err(error) => Err(format!("not a whole number of keys: {error}")),
    }
}

/// Whether callers must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// Tokens and permissions (the default).
    Token,
    /// No authentication: only for loopback.
    None,
}

/// Where the configuration is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// SQLite in the data directory, fsynced before every answer.
    Sqlite,
    /// In memory only.
    Memory,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl ServeConfig {
    /// `--workers`, or one per CPU this process may use (its affinity and cgroup quota
    /// included).
    pub fn worker_count(&self) -> NonZeroUsize {
        self.workers
            .unwrap_or_else(|| std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN))
    }

    /// Settings for tests and embedding: loopback on a free port, in-memory store,
    /// authentication off, two worker threads (tests start many servers at once, and one
    /// thread per CPU each would be thousands on a large machine; two still spread
    /// connections over threads).
    pub fn ephemeral() -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            insecure: false,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            store: StoreKind::Memory,
            log_format: LogFormat::Text,
            if_match: IfMatchPolicy::Optional,
            idempotency_ttl: DEFAULT_IDEMPOTENCY_TTL_SECONDS,
            idempotency_max_keys: DEFAULT_IDEMPOTENCY_MAX_KEYS,
            node_expiry: DEFAULT_NODE_EXPIRY_SECONDS,
            max_wait: DEFAULT_MAX_WAIT_SECONDS,
            workers: Some(NonZeroUsize::MIN.saturating_add(1)),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT_SECONDS,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT_SECONDS,
            public_url: None,
            auth: AuthMode::None,
            meta_etag_field: meta::DEFAULT_ETAG_FIELD.into(),
            meta_created_field: meta::DEFAULT_CREATED_FIELD.into(),
            meta_updated_field: meta::DEFAULT_UPDATED_FIELD.into(),
        }
    }

    /// The TLS files, when HTTPS is configured.
    pub fn tls_files(&self) -> Option<crate::tls::TlsFiles> {
        Some(crate::tls::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// The store settings these select.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            backend: match self.store {
                StoreKind::Sqlite => Backend::Sqlite(self.data_dir.clone()),
                StoreKind::Memory => Backend::Memory,
            },
            idempotency_ttl: std::time::Duration::from_secs(self.idempotency_ttl),
            idempotency_max_keys: self.idempotency_max_keys,
        }
    }

    /// The API settings these select.
    pub fn api_settings(&self) -> ApiSettings {
        ApiSettings {
            if_match: self.if_match,
            meta: MetaFields {
                etag: (self.if_match != IfMatchPolicy::Off).then(|| self.meta_etag_field.clone()),
                created: self.meta_created_field.clone(),
                updated: self.meta_updated_field.clone(),
            },
            max_wait: std::time::Duration::from_secs(self.max_wait),
            body_read_timeout: std::time::Duration::from_secs(self.body_read_timeout),
            https: self.tls_cert.is_some(),
            public_url: self.public_url.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--public-url` is kept so that a link's path can follow it, and anything a link could
    /// not start with is refused at start-up.
    #[test]
    fn public_urls_are_checked_and_kept_without_a_trailing_slash() {
        assert_eq!(
            parse_public_url("https://floe.example.com/").as_deref(),
            Ok("https://floe.example.com")
        );
        assert_eq!(
            parse_public_url("HTTPS://Floe.Example.com:443/config/").as_deref(),
            Ok("https://floe.example.com/config")
        );
        assert_eq!(
            parse_public_url("http://[::1]:4523").as_deref(),
            Ok("http://[::1]:4523")
        );
        for refused in [
            "floe.example.com",
            "ftp://floe.example.com",
            "https://floe.example.com/?a=b",
            "https://floe.example.com/#top",
            "https://admin:secret@floe.example.com",
            "file:///etc",
        ] {
            assert!(parse_public_url(refused).is_err(), "{refused}");
        }
    }

    /// [`ServeConfig::ephemeral`] is `floe serve`'s defaults but for what makes it ephemeral,
    /// and the API's meta field names default as the command line's do: a default changed in
    /// one place and not the other fails here.
    #[test]
    fn ephemeral_settings_are_the_defaults_but_for_what_makes_them_ephemeral() {
        if std::env::vars().any(|(name, _)| name.starts_with("FLOE_")) {
            eprintln!("skipped: FLOE_* variables in the environment change the defaults");
            return;
        }
        let Command::Serve(mut parsed) = Cli::try_parse_from(["floe", "serve"])
            .expect("the defaults parse")
            .command
        else {
            panic!("`floe serve` is the serve command");
        };
        assert_eq!(
            format!("{:?}", parsed.api_settings().meta),
            format!("{:?}", MetaFields::default())
        );
        parsed.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        parsed.store = StoreKind::Memory;
        parsed.auth = AuthMode::None;
        parsed.workers = Some(NonZeroUsize::MIN.saturating_add(1));
        assert_eq!(
            format!("{parsed:?}"),
            format!("{:?}", ServeConfig::ephemeral())
        );
    }

    #[test]
    fn workers_are_never_zero() {
        let serve = |args: &[&str]| match Cli::try_parse_from(args).map(|cli| cli.command) {
            Ok(Command::Serve(config)) => Ok(config),
            Ok(_) => panic!("`floe serve` is the serve command"),
            Err(error) => Err(error.to_string()),
        };
        let three = serve(&["floe", "serve", "--workers", "3"]).unwrap();
        assert_eq!(three.worker_count().get(), 3);
        let error = serve(&["floe", "serve", "--workers", "0"]).unwrap_err();
        assert!(error.contains("--workers"), "{error}");
    }
}
