//! Which certificate authorities `https://` trusts, and the rustls configuration built from them.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::error::ConfigError;

/// The certificate authorities an `https://` connection trusts.
///
/// The default is webpki's roots (Mozilla's list, built in), which is what Customer.io's own
/// certificates chain to. [`TlsOptions::with_native_roots`] uses the system's store instead
/// (a corporate TLS-inspecting proxy's CA is usually installed there), and
/// [`TlsOptions::with_ca_pem`] / [`TlsOptions::with_ca_file`] add CAs of your own: a staging
/// proxy's, or the mock's (`cio mock --tls --tls-ca-out ca.pem`).
///
/// ```
/// use cio_api::TlsOptions;
///
/// let err = TlsOptions::default().with_ca_pem(b"not a certificate").unwrap_err();
/// assert!(err.to_string().contains("no PEM certificate"));
/// ```
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// The system's store, when asked for; webpki's roots otherwise.
    native: Option<Vec<CertificateDer<'static>>>,
    /// CAs trusted on top.
    extra: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field(
                "roots",
                &match &self.native {
                    Some(certs) => format!("system store ({} certificates)", certs.len()),
                    None => "webpki".to_owned(),
                },
            )
            .field("extra_cas", &self.extra.len())
            .finish()
    }
}

impl TlsOptions {
    /// Trust the system's certificate store instead of webpki's roots (CAs added with
    /// [`TlsOptions::with_ca_pem`] stay trusted too). Fails when the store holds no usable
    /// certificate, since every connection would then fail.
    pub fn with_native_roots(mut self) -> Result<TlsOptions, ConfigError> {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
            return Err(ConfigError::Certificates {
                location: "the system's certificate store".into(),
                reason: if errors.is_empty() {
                    "it holds no certificate (install ca-certificates, or set SSL_CERT_FILE)".into()
                } else {
                    errors.join("; ")
                },
            });
        }
        for e in &found.errors {
            tracing::warn!(error = %e, "a certificate of the system's store could not be read");
        }
        self.native = Some(found.certs);
        Ok(self)
    }

    /// Also trust the CA certificates in `pem` (one or more `BEGIN CERTIFICATE` blocks).
    pub fn with_ca_pem(self, pem: &[u8]) -> Result<TlsOptions, ConfigError> {
        self.add_pem(pem, "the PEM given")
    }

    /// Also trust the CA certificates in the PEM file at `path`.
    pub fn with_ca_file(self, path: impl AsRef<Path>) -> Result<TlsOptions, ConfigError> {
        let path = path.as_ref();
        let pem = std::fs::read(path).map_err(|e| ConfigError::Certificates {
            location: path.display().to_string(),
            reason: e.to_string(),
        })?;
        self.add_pem(&pem, &path.display().to_string())
    }

    fn add_pem(mut self, pem: &[u8], location: &str) -> Result<TlsOptions, ConfigError> {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| ConfigError::Certificates {
                location: location.to_owned(),
                reason: format!("invalid PEM: {e}"),
            })?;
            // Checked now, so a bad certificate is an error here and not a handshake failure later.
            let mut probe = rustls::RootCertStore::empty();
            probe
                .add(cert.clone())
                .map_err(|e| ConfigError::Certificates {
                    location: location.to_owned(),
                    reason: format!("not a usable CA certificate: {e}"),
                })?;
            self.extra.push(cert);
            added += 1;
        }
        if added == 0 {
            return Err(ConfigError::Certificates {
                location: location.to_owned(),
                reason: "no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)".into(),
            });
        }
        Ok(self)
    }

    /// CAs added on top of the roots.
    pub fn extra_cas(&self) -> usize {
        self.extra.len()
    }

    /// The rustls client configuration: these roots, HTTP/1.1 by ALPN, ring's defaults.
    pub fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        match &self.native {
            Some(certs) => {
                roots.add_parsable_certificates(certs.iter().cloned());
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        roots.add_parsable_certificates(self.extra.iter().cloned());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // ring's default provider supports the default protocol versions: this cannot fail.
        let builder = match rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
        {
            Ok(b) => b,
            Err(e) => unreachable!("ring supports TLS 1.2 and 1.3: {e}"),
        };
        let mut config = builder.with_root_certificates(roots).with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }

    pub(super) fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(Arc::new(self.client_config()))
    }
}
