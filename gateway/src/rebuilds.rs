//! Projection rebuilds started over HTTP (`POST /v1/admin/projections/{name}/rebuild`): each
//! runs as a background task of this process, and [`Rebuilds`] remembers the last one per
//! projection (running, done or failed, with its progress) so that
//! `GET /v1/admin/projections` can show it.
//!
//! One rebuild per projection at a time: this process refuses a second one while its own
//! runs, and the projections crate's advisory lock refuses one that another process runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use orderflow_projections::{Phase, Progress, Projection, RebuildOptions};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::problem::{error_chain, ApiError};

/// Where a rebuild started over HTTP stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RebuildState {
    /// Started and not finished yet.
    Running,
    /// Finished; the rebuilt tables are live.
    Done,
    /// Stopped with an error (`error`).
    Failed,
}

/// The last rebuild of one projection started over HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RebuildTask {
    /// The projection's name.
    pub projection: String,
    /// Whether it is running, done or failed.
    pub state: RebuildState,
    /// When the rebuild was started.
    pub started_at: DateTime<Utc>,
    /// When it finished or failed (`null` while running).
    pub finished_at: Option<DateTime<Utc>>,
    /// The phase the rebuild last reported (`null` until its first report).
    pub phase: Option<Phase>,
    /// Events folded so far.
    pub done: u64,
    /// Events to fold as known now.
    pub total: u64,
    /// The position the rebuilt tables hold, once done.
    pub position: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// The rebuilds of this process, by projection name. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Rebuilds(Arc<Mutex<HashMap<String, RebuildTask>>>);

impl Rebuilds {
    fn update(&self, name: &str, change: impl FnOnce(&mut RebuildTask)) {
        let mut tasks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = tasks.get_mut(name) {
            change(task);
        }
    }

    /// The last rebuild of `name` started here, if any.
    pub fn get(&self, name: &str) -> Option<RebuildTask> {
        let tasks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.get(name).cloned()
    }

    /// Starts rebuilding `projection` (and swapping it in) in a background task.
    ///
    /// # Errors
    /// [`ApiError::Busy`] when this process rebuilds it already.
    pub fn start(
        &self,
        pool: PgPool,
        projection: Arc<dyn Projection>,
    ) -> Result<RebuildTask, ApiError> {
        let name = projection.name().to_string();
        let task = RebuildTask {
            projection: name.clone(),
            state: RebuildState::Running,
            started_at: Utc::now(),
            finished_at: None,
            phase: None,
            done: 0,
            total: 0,
            position: None,
            error: None,
        };
        {
            let mut tasks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if tasks
                .get(&name)
                .is_some_and(|t| t.state == RebuildState::Running)
            {
                return Err(ApiError::Busy(format!(
                    "projection {name} is being rebuilt already; GET /v1/admin/projections shows its progress"
                )));
            }
            tasks.insert(name.clone(), task.clone());
        }
        let rebuilds = self.clone();
        tokio::spawn(async move {
            let progress = |p: Progress| {
                rebuilds.update(&name, |t| {
                    t.phase = Some(p.phase);
                    t.done = p.done;
                    t.total = p.total;
                });
            };
            tracing::info!(projection = %name, "rebuild started over HTTP");
            let result = orderflow_projections::rebuild(
                &pool,
                projection.as_ref(),
                RebuildOptions::default(),
                &progress,
            )
            .await;
            rebuilds.update(&name, |t| {
                t.finished_at = Some(Utc::now());
                match result {
                    Ok(report) => {
                        tracing::info!(projection = %name, events = report.events,
                            position = report.position, "rebuild done");
                        t.state = RebuildState::Done;
                        t.position = Some(report.position);
                        t.phase = Some(Phase::Done);
                    }
                    Err(error) => {
                        let cause = error_chain(&error);
                        tracing::error!(projection = %name, error = %cause, "rebuild failed");
                        t.state = RebuildState::Failed;
                        t.error = Some(cause);
                    }
                }
            });
        });
        Ok(task)
    }
}
