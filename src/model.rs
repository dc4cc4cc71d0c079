//! The pure domain: datasets, leases, the configuration that holds them, and the rules for
//! changing it. Nothing here knows about HTTP, files or async; the store drives it and the API
//! renders it.

pub mod configuration;
pub mod dataset;
pub mod lease;
pub mod schema;

pub use configuration::{Change, Configuration, Operation, Outcome, Rejection};
pub use dataset::{Dataset, DatasetId, Metadata, NodeId};
pub use lease::{Lease, Timestamp};
