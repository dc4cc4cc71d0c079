//! Every setting, as a command-line flag that can also be given as a `FLOE_*` environment
//! variable. `floe --help` and `floe serve --help` are the reference.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
}

/// Settings of `floe serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address and port to listen on (plain HTTP). Port 0 picks a free port.
    #[arg(long, env = "FLOE_LISTEN", default_value = "127.0.0.1:4523")]
    pub listen: SocketAddr,

    /// Directory holding the configuration database (created if missing).
    #[arg(long, env = "FLOE_DATA_DIR", default_value = "./floe-data")]
    pub data_dir: PathBuf,

    /// Where the configuration is kept: `sqlite` (durable, in --data-dir) or `memory`
    /// (lost when floe stops).
    #[arg(long, env = "FLOE_STORE", value_enum, default_value_t = StoreKind::Sqlite)]
    pub store: StoreKind,

    /// Log line format on standard error. The level is set with RUST_LOG (default `info`).
    #[arg(long, env = "FLOE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
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
    /// Settings for tests and embedding: loopback on a free port, in-memory store.
    pub fn ephemeral() -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: PathBuf::from("./floe-data"),
            store: StoreKind::Memory,
            log_format: LogFormat::Text,
        }
    }

    /// The store backend these settings select.
    pub fn backend(&self) -> crate::store::Backend {
        match self.store {
            StoreKind::Sqlite => crate::store::Backend::Sqlite(self.data_dir.clone()),
            StoreKind::Memory => crate::store::Backend::Memory,
        }
    }
}
