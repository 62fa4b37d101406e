//! TLS helpers for Switchboard's own connections and for plug-ins' connections to their
//! networks (MQTT, XMPP, SMTP/IMAP over TLS): rustls client settings trusting the platform's
//! roots plus extra ones, and PEM loading with errors in plain words.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The TLS client settings [`tls_client_config`] makes (rustls), for a plug-in's network
/// library.
pub type TlsClientConfig = rustls::ClientConfig;

/// A certificate chain and its private key, presented to servers that ask for a client
/// certificate.
pub type ClientIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// TLS client settings for a connection of Switchboard's own or of a plug-in to its network
/// (MQTT over TLS, say): the platform's roots and `extra_roots` are trusted, and `client` is
/// presented when the server asks for a client certificate. The error says what is wrong.
pub fn tls_client_config(
    extra_roots: Vec<CertificateDer<'static>>,
    client: Option<ClientIdentity>,
) -> Result<TlsClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
        extra_roots,
        Arc::clone(&provider),
    )
    .map_err(|e| e.to_string())?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    match client {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the client certificate and key do not go together: {e}")),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1); the error says in plain words what
/// is wrong with the file.
pub fn load_pem_private_key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>, String> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| format!("it holds no usable private key: {e}"))
}

/// The certificates of a PEM file (extra trusted roots for [`tls_client_config`]); the error says in
/// plain words what is wrong with the file.
pub fn load_pem_certificates(
    path: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("it is not valid PEM: {e}"))?;
    if certificates.is_empty() {
        return Err("it holds no certificate".to_owned());
    }
    Ok(certificates)
}
