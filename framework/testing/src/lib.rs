//! Switchboard's test kit, shared by the framework's crates, the plug-ins and the integration
//! tests: throwaway TLS certificates ([`TestCertificates`]).

mod certificates;

pub use certificates::TestCertificates;
