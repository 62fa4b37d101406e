//! The host's logic against an in-process homeserver (`switchboard-testing`'s
//! `MockHomeserver`) instead of a Synapse: faults a real homeserver cannot be made to produce
//! on demand, in seconds. One binary, a module per area.

mod harness;
mod isolation;
mod lost_answers;
mod notices;
mod outbox;
mod shutdown;
mod wire;
