//! Where the gateway may send a webhook: the one check for every URL a brand or
//! the configuration gives (`receipt_url`, a brand's `fallback_url`), so that
//! nobody can make the gateway POST into its own network (server-side request
//! forgery).
//!
//! A URL must be `http` or `https`, at most [`MAX_URL`] characters, with a host
//! and without credentials (`user:pass@`). Its address, whether written in the URL
//! (in any form the URL standard reads: `2130706433`, `0x7f.1`, `[::ffff:7f00:1]`)
//! or resolved from its name, must not be one of the [`forbidden`] ones
//! (loopback, private, link-local and cloud metadata, carrier-grade NAT, unique
//! local, multicast, reserved, documentation, and IPv6 forms that embed such an
//! IPv4 address), unless an operator names its network in `[http]
//! webhook_allow_networks`. The check runs when the URL is given (400 at submit,
//! a config error at load) and again at every connection: the webhook client
//! resolves names through [`PolicyResolver`], which drops forbidden addresses,
//! so a name that resolves elsewhere later (DNS rebinding) still cannot reach
//! them; redirects are never followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::Url;

/// Longest URL.
pub const MAX_URL: usize = 2048;

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    #[error("must be an http or https URL with a host, of at most 2048 characters")]
    Malformed,
    #[error("must not carry credentials (user:password@)")]
    Credentials,
    #[error(
        "its address {0} is loopback, private, link-local or otherwise internal (an operator may allow it in [http] webhook_allow_networks)"
    )]
    Internal(IpAddr),
}

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct UrlPolicy {
    allow: Arc<Vec<IpNet>>,
}

impl UrlPolicy {
    /// The policy with the operator's allowed networks.
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self {
            allow: Arc::new(allow),
        }
    }

    /// Whether the gateway may connect to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|n| n.contains(&ip)) || !forbidden(ip)
    }

    /// The URL, parsed, if the gateway may post to it (a name is checked again
    /// when it is resolved).
    pub fn check(&self, u: &str) -> Result<Url, UrlRefusal> {
        if u.len() > MAX_URL {
            return Err(UrlRefusal::Malformed);
        }
        let url = Url::parse(u).map_err(|_| UrlRefusal::Malformed)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlRefusal::Malformed);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlRefusal::Credentials);
        }
        let ip = match url.host() {
            None => return Err(UrlRefusal::Malformed),
            Some(url::Host::Domain(_)) => None,
            Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
        };
        if let Some(ip) = ip
            && !self.allows(ip)
        {
            return Err(UrlRefusal::Internal(ip));
        }
        Ok(url)
    }
}

/// Whether `ip` is an address a webhook must not reach (see the module docs).
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => forbidden_v4(a),
        IpAddr::V6(a) => forbidden_v6(a),
    }
}

fn forbidden_v4(a: Ipv4Addr) -> bool {
    let [x, y, ..] = a.octets();
    a.is_unspecified()
        || x == 0 // "this network"
        || a.is_loopback()
        || a.is_private()
        || a.is_link_local() // 169.254/16, cloud metadata among them
        || (x == 100 && (64..128).contains(&y)) // carrier-grade NAT 100.64/10
        || (x == 192 && y == 0 && a.octets()[2] == 0) // IETF protocol assignments
        || a.is_documentation()
        || (x == 198 && (y == 18 || y == 19)) // benchmarking 198.18/15
        || a.is_multicast()
        || x >= 240 // reserved, broadcast
}

fn forbidden_v6(a: Ipv6Addr) -> bool {
    let s = a.segments();
    // Forms that carry an IPv4 address: mapped, compatible, NAT64, 6to4.
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = a.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    if s[..6] == [0; 6] && !a.is_loopback() && !a.is_unspecified() {
        return forbidden_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return forbidden_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return forbidden_v4(embedded(s[1], s[2]));
    }
    a.is_unspecified()
        || a.is_loopback()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
        || a.is_multicast()
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0) // Teredo
        || (s[0] == 0x0100 && s[1..4] == [0; 3]) // discard-only 100::/64
}

/// The webhook client's name resolution: the system's, minus the addresses the
/// policy forbids (a name with none left fails to resolve).
#[derive(Debug, Clone)]
pub struct PolicyResolver(pub UrlPolicy);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = found.filter(|a| policy.allows(a.ip())).collect();
            if allowed.is_empty() {
                return Err(format!(
                    "{} resolves to no address webhooks may reach",
                    name.as_str()
                )
                .into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_in_every_spelling_are_refused() {
        let p = UrlPolicy::default();
        for u in [
            "http://127.0.0.1/hook",
            "http://[::ffff:127.0.0.1]/hook",
            "http://2130706433/hook",
            "http://0x7f.1/hook",
            "http://017700000001/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[::]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://[::127.0.0.1]/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
        ] {
            assert!(
                matches!(p.check(u), Err(UrlRefusal::Internal(_))),
                "{u}: {:?}",
                p.check(u)
            );
        }
        assert_eq!(
            p.check("https://user:pw@hooks.example.com/x"),
            Err(UrlRefusal::Credentials)
        );
        assert_eq!(
            p.check("https://user@hooks.example.com/x"),
            Err(UrlRefusal::Credentials)
        );
        assert_eq!(
            p.check("ftp://hooks.example.com/x"),
            Err(UrlRefusal::Malformed)
        );
        assert_eq!(p.check("file:///etc/passwd"), Err(UrlRefusal::Malformed));
        assert_eq!(p.check("not a url"), Err(UrlRefusal::Malformed));
        assert_eq!(
            p.check(&format!("https://a.example/{}", "x".repeat(2048))),
            Err(UrlRefusal::Malformed)
        );
        for u in [
            "https://hooks.example.com/otpgw",
            "http://93.184.215.14:8080/x",
            "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/x",
            "http://localhost/x", // a name: checked when resolved
        ] {
            assert!(p.check(u).is_ok(), "{u}");
        }
    }

    #[test]
    fn the_operator_allows_networks() {
        let p = UrlPolicy::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ]);
        assert!(p.check("http://127.0.0.1:9000/hook").is_ok());
        assert!(p.check("http://[fd00::5]/").is_ok());
        assert!(p.check("http://10.0.0.1/").is_err());
        assert!(p.allows("127.0.0.1".parse().unwrap()));
        assert!(!p.allows("169.254.169.254".parse().unwrap()));
    }

    #[tokio::test]
    async fn names_resolving_to_internal_addresses_do_not_resolve() {
        use reqwest::dns::Resolve;
        let r = PolicyResolver(UrlPolicy::default());
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(r.resolve(name).await.is_err(), "localhost is loopback");
        let allowed = PolicyResolver(UrlPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]));
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let got: Vec<SocketAddr> = allowed.resolve(name).await.unwrap().collect();
        assert!(got.iter().all(|a| a.ip().is_loopback()) && !got.is_empty());
    }
}
