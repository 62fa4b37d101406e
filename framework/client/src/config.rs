//! The `client` section of the config: retries, backoff, timeouts and extra trusted roots.

use serde::{Deserialize, Serialize};

/// The homeserver client section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Retries of one request after 429, 5xx or a connection error, before giving up.
    pub max_retries: u32,
    /// First backoff pause, in milliseconds; doubled on every retry, with jitter.
    pub initial_backoff_ms: u64,
    /// Longest backoff pause, in milliseconds.
    pub max_backoff_ms: u64,
    /// Timeout of one request, in seconds.
    pub request_timeout_secs: u64,
    /// Timeout of one file download or upload, in seconds (files are streamed; a large one
    /// on a slow link needs longer than a request).
    pub media_timeout_secs: u64,
    /// PEM file of CA certificates trusted for an `https` homeserver URL besides the system's
    /// (a private CA); relative to the config file. Empty: the system's only.
    pub tls_ca_file: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            max_retries: 10,
            initial_backoff_ms: 250,
            max_backoff_ms: 30_000,
            request_timeout_secs: 60,
            media_timeout_secs: 600,
            tls_ca_file: String::new(),
        }
    }
}
