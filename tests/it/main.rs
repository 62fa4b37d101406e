//! Switchboard's integration tests, one binary with a module per area, against real Synapse,
//! PostgreSQL and Mosquitto started by the fixtures in [`common`].

mod common;

mod bot_admin;
mod bridge_fake_network;
mod bridge_loopback;
mod bridge_matrix;
mod bridge_mqtt;
mod cli;
mod encryption;
mod faults;
mod standby;
mod store_postgres;
mod synapse_e2e;
