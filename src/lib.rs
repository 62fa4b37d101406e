//! The `switchboard` program's library part: the plug-in registry, the example config's
//! checks, `doctor`, and the demo (which, like the integration tests, runs a local Synapse:
//! `switchboard_testing::synapse`).

pub mod demo;
pub mod doctor;
#[cfg(test)]
mod example_config;
pub mod plugins;
