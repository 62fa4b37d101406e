//! Throwaway certificates for TLS tests, made with the `openssl` command: a CA, a server
//! certificate for `localhost` and 127.0.0.1, and a client certificate, all signed by the CA.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The PEM files written by [`TestCertificates::issue`].
#[derive(Clone, Debug)]
pub struct TestCertificates {
    /// The CA's certificate.
    pub ca: PathBuf,
    /// The server's certificate (`localhost`, 127.0.0.1).
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
    /// The client's certificate (common name `switchboard`).
    pub client_cert: PathBuf,
    /// The client's private key.
    pub client_key: PathBuf,
}

/// The options that make an EC P-256 key without a passphrase.
const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

impl TestCertificates {
    /// Makes the CA and the certificates it signs in `dir` (valid for two days); the error
    /// says which `openssl` step failed and what it printed.
    pub fn issue(dir: &Path) -> Result<Self, String> {
        let openssl = |args: &[&str]| -> Result<(), String> {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .map_err(|e| format!("cannot run openssl (Debian package openssl): {e}"))?;
            if output.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "openssl {args:?} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                ))
            }
        };
        openssl(
            &[
                &["req", "-x509"][..],
                &EC_KEY,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=Switchboard test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        )?;
        for (name, subject, extensions) in [
            (
                "server",
                "/CN=localhost",
                "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "/CN=switchboard", "extendedKeyUsage=clientAuth\n"),
        ] {
            let key = format!("{name}.key");
            let request = format!("{name}.csr");
            let extensions_file = format!("{name}.ext");
            openssl(
                &[
                    &["req", "-new"][..],
                    &EC_KEY,
                    &["-keyout", &key, "-out", &request, "-subj", subject],
                ]
                .concat(),
            )?;
            std::fs::write(
                dir.join(&extensions_file),
                format!(
                    "{extensions}basicConstraints=critical,CA:FALSE\n\
                     keyUsage=critical,digitalSignature\n"
                ),
            )
            .map_err(|e| format!("cannot write {extensions_file}: {e}"))?;
            openssl(&[
                "x509",
                "-req",
                "-in",
                &request,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &extensions_file,
                "-out",
                &format!("{name}.pem"),
            ])?;
        }
        Ok(Self {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        })
    }
}
