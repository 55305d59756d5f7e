//! Names to workers, for `orderflow worker <name>`: [`build_worker`] builds the handler the
//! binary then runs with `orderflow_bus::runtime::run_consumer`.

use std::sync::Arc;

use sqlx::PgPool;

use crate::inventory::{self, InventoryWorker};
use crate::loyalty::{self, LoyaltyWorker};
use crate::notifications::{self, NotificationOptions, NotificationsWorker};
use crate::shipments::{self, ShipmentOptions, ShipmentsWorker};
use orderflow_bus::handler::Handler;

/// The workers this crate provides (analytics lives in `orderflow-projections`).
pub const WORKER_NAMES: [&str; 4] = [
    inventory::NAME,
    notifications::NAME,
    shipments::NAME,
    loyalty::NAME,
];

/// What the workers need.
#[derive(Clone)]
pub struct WorkerDeps {
    /// The database holding the event log, the inbox and the workers' own tables.
    pub pool: PgPool,
    /// The channel the notifications worker sends through.
    pub notifications: NotificationOptions,
    /// The carrier the shipments worker books with.
    pub shipments: ShipmentOptions,
}

impl WorkerDeps {
    /// The pool with default options (log channel, simulated carrier).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            notifications: NotificationOptions::default(),
            shipments: ShipmentOptions::default(),
        }
    }
}

/// Why no worker was built.
#[derive(Debug, thiserror::Error)]
pub enum UnknownWorker {
    /// The name (given here) is not one of [`WORKER_NAMES`].
    #[error("unknown worker {0:?}; known: inventory, notifications, shipments, loyalty")]
    Unknown(String),
    /// The worker is known but its channel or carrier options cannot be built.
    #[error("worker {worker} is misconfigured: {reason}")]
    Misconfigured {
        /// The worker's name.
        worker: String,
        /// Why its channel or carrier could not be built.
        reason: String,
    },
}

/// The handler of worker `name`.
///
/// # Errors
/// [`UnknownWorker::Unknown`] for a name not in [`WORKER_NAMES`],
/// [`UnknownWorker::Misconfigured`] when its channel or carrier cannot be built.
pub fn build_worker(name: &str, deps: WorkerDeps) -> Result<Arc<dyn Handler>, UnknownWorker> {
    let misconfigured = |reason: String| UnknownWorker::Misconfigured {
        worker: name.to_string(),
        reason,
    };
    Ok(match name {
        inventory::NAME => Arc::new(InventoryWorker::new(deps.pool)),
        notifications::NAME => {
            let channel = deps
                .notifications
                .build_channel()
                .map_err(|e| misconfigured(e.to_string()))?;
            Arc::new(
                NotificationsWorker::new(deps.pool, channel)
                    .with_max_in_flight(deps.notifications.max_in_flight),
            )
        }
        shipments::NAME => {
            let carrier = deps
                .shipments
                .build_carrier()
                .map_err(|e| misconfigured(e.to_string()))?;
            Arc::new(
                ShipmentsWorker::new(deps.pool, carrier)
                    .with_max_in_flight(deps.shipments.max_in_flight),
            )
        }
        loyalty::NAME => Arc::new(LoyaltyWorker::new(deps.pool)),
        other => return Err(UnknownWorker::Unknown(other.to_string())),
    })
}
