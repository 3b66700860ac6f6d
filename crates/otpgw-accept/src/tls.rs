//! TLS with rustls (ring provider, TLS 1.2 and 1.3), for the brand listener and for
//! the binds to carriers: certificates, keys and trusted roots come from PEM files,
//! read and checked when the configuration is loaded, so `otpgw check-config`
//! reports a bad file.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls;

/// The TLS listener's address and server configuration.
#[derive(Debug, Clone)]
pub struct TlsListen {
    pub listen: SocketAddr,
    pub config: Arc<rustls::ServerConfig>,
}

/// Build a server configuration from a PEM certificate chain and a PEM private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let (certs, key_der) = identity(cert, key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| format!("certificate and key do not fit together: {e}"))?;
    Ok(Arc::new(cfg))
}

/// The certificate chain and key of PEM files.
type Identity = (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
);

fn identity(cert: &Path, key: &Path) -> Result<Identity, String> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", cert.display()));
    }
    let key_der = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .map_err(|e| format!("{}: {e}", key.display()))?
        .ok_or_else(|| format!("{}: no private key in it", key.display()))?;
    Ok((certs, key_der))
}

/// When the first certificate of a PEM chain (the one presented) expires: Unix
/// seconds of its `notAfter`.
pub fn not_after(cert: &Path) -> Result<i64, String> {
    let first = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .next()
        .ok_or_else(|| format!("{}: no certificate in it", cert.display()))?
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&first)
        .map_err(|e| format!("{}: not an X.509 certificate: {e}", cert.display()))?;
    Ok(parsed.validity().not_after.timestamp())
}

/// The roots of a PEM file of CA certificates.
fn roots(ca: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut read(ca)?.as_slice()) {
        let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate in it", ca.display()));
    }
    Ok(roots)
}

/// A client configuration for a bind to a carrier: the carrier's certificate is
/// checked against `ca` (PEM roots; absent: the public web roots), and with
/// `client` (certificate chain and key) otpgw presents its own (mutual TLS).
pub fn client_config(
    ca: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = match ca {
        Some(ca) => roots(ca)?,
        None => rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let cfg = match client {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let (certs, key) = identity(cert, key)?;
            b.with_client_auth_cert(certs, key)
                .map_err(|e| format!("client certificate and key do not fit together: {e}"))?
        }
    };
    Ok(Arc::new(cfg))
}

/// A server configuration that, with `client_ca`, requires each client to present
/// a certificate signed by it (mutual TLS; the simulated carrier uses it).
pub fn server_config_with_clients(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let Some(ca) = client_ca else {
        return server_config(cert, key);
    };
    let (certs, key_der) = identity(cert, key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(ca)?),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("{}: {e}", ca.display()))?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key_der)
        .map_err(|e| format!("certificate and key do not fit together: {e}"))?;
    Ok(Arc::new(cfg))
}

fn read(p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}
