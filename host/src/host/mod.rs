//! The embedding API and the composition root: [`Host`] and its builder,
//! the default router, code reloads, object admin, the configuration file
//! and guest builds. The only place that wires the layers together: the
//! store, the runtime over it, and the imports the linker finds by trait
//! ([`link`]).

mod admin;
mod assets;
mod backup;
mod browse;
pub mod build;
mod builder;
mod cluster;
pub mod config;
mod export;
mod history;
#[allow(clippy::module_inception)] // the file of the `Host` type, named after it
mod host;
mod link;
mod reload;
mod router;
mod ui;

pub use admin::{DataDir, ObjectDetails, ObjectSummary, check_data_dir};
pub use assets::{AssetsConfig, HtmlHandling, NotFoundHandling, RunWorkerFirst};
pub use backup::BACKUP_REPORT_HEADER;
pub use browse::{
    AlarmRun, BindingSummary, KvItem, KvPage, MAX_HEX_SHOWN, MAX_OBJECTS_PAGE, MAX_QUERY_BYTES,
    ObjectPage, ObjectQuery, ShownValue,
};
pub use builder::HostBuilder;
pub use cluster::{ClusterStatus, cluster_status};
pub use export::{
    EXPORT_FORMAT, EXPORT_VERSION, ExportHeader, ImportOptions, MAX_EXPORT_LINE, PAGES_PER_LINE,
    TransferReport,
};
pub use history::{RestorePoint, Restored};
pub use host::{Host, Stats};
pub use router::{HEALTH_PATH, READY_PATH, Route};
