//! Shared fixtures for the integration tests: a real Synapse, a private
//! Postgres cluster and a tiny Client-Server API client.
//!
//! The integration-test binary (`tests/it`) includes this module once.

pub mod contract;
pub mod mosquitto;
pub mod postgres;
pub mod proxy;
pub mod switchboard_instance;

pub use switchboard::synapse::{MatrixUser, Synapse, file_tail, free_port, wait_until};
