//! TLS for the mock: a certificate authority made at start, and a server certificate it signs for
//! `127.0.0.1`, `::1` and `localhost`.
//!
//! A CA and a leaf rather than one self-signed certificate: every client (rustls, OpenSSL in
//! Node, Go in k6, curl) accepts "trust this CA", while a self-signed leaf used as its own root
//! is refused by some. The CA's private key lives only in this process and is never written.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority made in memory and a server certificate it signed for `127.0.0.1`,
/// `::1` and `localhost`: what [`crate::MockBuilder::tls`] serves with, and what a test server of
/// your own can use to speak TLS on loopback.
#[derive(Clone)]
pub struct TlsIdentity {
    ca_pem: String,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// The CA certificate clients must trust, as PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Accepts TLS connections with the server certificate (ALPN `http/1.1`).
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.acceptor.clone()
    }

    /// A new CA and server certificate (fresh keys every time).
    pub fn generate() -> Result<TlsIdentity, String> {
        let fail = |what: &str, e: rcgen::Error| format!("cannot make the mock's {what}: {e}");
        let ca_key = KeyPair::generate().map_err(|e| fail("CA key", e))?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(|e| fail("CA", e))?;
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            "cio mock CA (made at start; not for production)",
        );
        ca.distinguished_name = name;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).map_err(|e| fail("CA", e))?;

        let key = KeyPair::generate().map_err(|e| fail("server key", e))?;
        let mut leaf = CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ])
        .map_err(|e| fail("server certificate", e))?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "cio mock");
        leaf.distinguished_name = name;
        let leaf_cert = leaf
            .signed_by(&key, &ca_cert, &ca_key)
            .map_err(|e| fail("server certificate", e))?;

        let chain: Vec<CertificateDer<'static>> =
            vec![leaf_cert.der().clone(), ca_cert.der().clone()];
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot configure TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| format!("cannot configure TLS: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsIdentity {
            ca_pem: ca_cert.pem(),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }
}
