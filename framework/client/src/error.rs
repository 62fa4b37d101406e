//! What can go wrong talking to the homeserver, and what the client reads from its errors.

use serde::Deserialize;

/// Errors of the homeserver client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The homeserver answered with an error.
    #[error("{endpoint}: the homeserver answered {status} {errcode}: {message}")]
    Homeserver {
        /// Endpoint name.
        endpoint: &'static str,
        /// HTTP status.
        status: u16,
        /// Matrix error code (`M_…`), or `-` when the body had none.
        errcode: String,
        /// Human-readable error from the homeserver.
        message: String,
    },
    /// No answer: connection refused, reset or timed out.
    #[error("{endpoint}: cannot reach the homeserver at {url}: {message}")]
    Unreachable {
        /// Endpoint name.
        endpoint: &'static str,
        /// Base URL tried.
        url: String,
        /// The transport error.
        message: String,
        /// Whether the request may have reached the homeserver (it was sent, or the
        /// connection broke while it was); `false` when no connection could be made.
        sent: bool,
    },
    /// Retries were exhausted; the last error is inside.
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: Box<ClientError>,
    },
    /// A file is larger than the limit it was fetched with.
    #[error("{endpoint}: the file is larger than {limit} bytes")]
    TooLarge {
        /// Endpoint name.
        endpoint: &'static str,
        /// The limit.
        limit: u64,
    },
    /// The request could not be built (a bug or an invalid id).
    #[error("{endpoint}: cannot build the request: {message}")]
    Build {
        /// Endpoint name.
        endpoint: &'static str,
        /// What failed.
        message: String,
    },
    /// An event for an encrypted room could not be encrypted (nothing was sent).
    #[error("cannot encrypt the event: {message}")]
    Encryption {
        /// What failed.
        message: String,
        /// Whether trying again later may succeed (the database was unavailable).
        transient: bool,
    },
    /// A success response that does not decode.
    #[error("{endpoint}: the homeserver's answer does not decode: {message}")]
    Decode {
        /// Endpoint name.
        endpoint: &'static str,
        /// What failed.
        message: String,
    },
}

impl ClientError {
    /// Whether trying again later may succeed (rate limits, server errors, outages).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Homeserver { status, .. } => *status == 429 || *status >= 500,
            ClientError::Unreachable { .. } => true,
            ClientError::GaveUp { last, .. } => last.is_transient(),
            ClientError::Encryption { transient, .. } => *transient,
            ClientError::Build { .. }
            | ClientError::Decode { .. }
            | ClientError::TooLarge { .. } => false,
        }
    }

    /// Whether the homeserver may have done what was asked even though no success came
    /// back: a 5xx, a lost connection or a timeout after the request went out, or a success
    /// that did not decode. A request that creates something (a room, an upload) is not
    /// repeated blindly after such a failure: what it created is looked up first.
    #[must_use]
    pub fn may_have_been_applied(&self) -> bool {
        match self {
            ClientError::Homeserver { status, .. } => *status >= 500,
            ClientError::Unreachable { sent, .. } => *sent,
            ClientError::GaveUp { last, .. } => last.may_have_been_applied(),
            ClientError::Decode { .. } => true,
            ClientError::Build { .. }
            | ClientError::TooLarge { .. }
            | ClientError::Encryption { .. } => false,
        }
    }

    /// The Matrix error code, if the homeserver sent one.
    #[must_use]
    pub fn errcode(&self) -> Option<&str> {
        match self {
            ClientError::Homeserver { errcode, .. } => Some(errcode),
            ClientError::GaveUp { last, .. } => last.errcode(),
            _ => None,
        }
    }

    /// The HTTP status, if the homeserver answered.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Homeserver { status, .. } => Some(*status),
            ClientError::GaveUp { last, .. } => last.status(),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
/// A Matrix error response's body.
pub(crate) struct ErrorBody {
    pub(crate) errcode: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) retry_after_ms: Option<u64>,
}
