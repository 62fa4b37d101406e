//! Switchboard's test kit, shared by the framework's crates, the plug-ins and the integration
//! tests: the contract tests every bridge must pass ([`Contract`]), an in-process fake chat
//! network ([`FakeNetwork`]), an in-process homeserver ([`MockHomeserver`]), and throwaway TLS
//! certificates ([`TestCertificates`]).
//!
//! With the feature `servers`, the real servers Switchboard is tested against, each started as
//! a plain process on a free loopback port and stopped when dropped: [`synapse`] (installed
//! from `PyPI` into a shared virtualenv; the `demo` command runs it too), [`postgres`] (a
//! private cluster) and [`mosquitto`]; [`process`] has the helpers they share. The Prosody
//! and SMTP fixtures of the XMPP and email bridges belong here too.

mod certificates;
mod contract;
mod homeserver;
#[cfg(feature = "servers")]
pub mod mosquitto;
mod network;
#[cfg(feature = "servers")]
pub mod postgres;
#[cfg(feature = "servers")]
pub mod process;
#[cfg(feature = "servers")]
pub mod synapse;

pub use certificates::TestCertificates;
pub use contract::{
    Contract, ContractSubject, MatrixTester, TransactionBuilder, TransactionPusher,
};
pub use homeserver::{Fault, MockEvent, MockHomeserver, RecordedRequest};
pub use network::{FakeChat, FakeNetwork, NetworkDown, NetworkMessage};
