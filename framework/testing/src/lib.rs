//! Switchboard's test kit, shared by the framework's crates, the plug-ins and the integration
//! tests: the contract tests every bridge must pass ([`Contract`]), an in-process fake chat
//! network ([`FakeNetwork`]), an in-process homeserver ([`MockHomeserver`]), and throwaway TLS
//! certificates ([`TestCertificates`]).

mod certificates;
mod contract;
mod homeserver;
mod network;

pub use certificates::TestCertificates;
pub use contract::{
    Contract, ContractSubject, MatrixTester, TransactionBuilder, TransactionPusher,
};
pub use homeserver::{Fault, MockEvent, MockHomeserver, RecordedRequest};
pub use network::{FakeChat, FakeNetwork, NetworkDown, NetworkMessage};
