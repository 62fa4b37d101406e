//! What the framework gives every plug-in besides its ports: when to stop, where its
//! background tasks run, and the clock.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;

/// The services of a plug-in's context.
#[derive(Clone, Debug)]
pub struct Services {
    /// Fires when Switchboard stops.
    pub shutdown: CancellationToken,
    /// Tracks the plug-in's background tasks (waited for at shutdown).
    pub tasks: TaskTracker,
    /// Where the time comes from.
    pub clock: Arc<dyn Clock>,
}
