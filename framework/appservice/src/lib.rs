//! Switchboard's edge towards the homeserver: the Application Service API server (hs_token
//! checks, transactions, user and alias queries, ping), the durable inbox the transactions are
//! stored in before they are acknowledged, and the router that drains it into per-room ordered
//! handlers.

mod config;
pub mod inbox;
mod metrics;
mod server;

pub use config::InboxConfig;
pub use metrics::InboxMetrics;
pub use server::{QueryHandler, list, ping_router, router, serve};
