//! The `switchboard` program's library part: the plug-in registry, `doctor`, and the demo
//! (which, like the integration tests, runs a local Synapse).

pub mod demo;
pub mod doctor;
pub mod plugins;
pub mod synapse;
