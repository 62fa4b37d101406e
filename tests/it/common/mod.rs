//! What the integration tests share besides `switchboard-testing`'s servers (Synapse,
//! PostgreSQL, Mosquitto, re-exported here): a Switchboard instance per test, a proxy that
//! can cut the homeserver off, and the contract tests' Matrix side.
//!
//! The integration-test binary (`tests/it`) includes this module once.

pub mod contract;
pub mod proxy;
pub mod switchboard_instance;

pub use switchboard_testing::process::{free_port, wait_until};
pub use switchboard_testing::synapse::{MatrixUser, Synapse};
pub use switchboard_testing::{mosquitto, postgres};
