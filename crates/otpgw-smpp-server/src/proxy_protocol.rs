//! The PROXY protocol (HAProxy's, versions 1 and 2) in front of the SMPP door: a
//! load balancer in TCP mode writes the client's real address before the first
//! SMPP byte. Taken only from connections whose address is in `[server]
//! trusted_proxies` (anyone else could claim any address); from those it is
//! required, within the bind timeout. The session, the lock-outs and the logs then
//! see the client's address; the connection limits per address still count the
//! proxy's (size them for it).
//!
//! [`parse_v1`] and [`parse_v2`] are sans-IO; [`read_header`] reads exactly the
//! header's bytes (nothing of the SMPP stream after it) from a socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The version 2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest version 1 line, CRLF included.
const V1_MAX: usize = 107;

/// Why a header is refused (the connection is closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header")]
    Malformed,
    #[error("connection closed or too slow before the PROXY protocol header ended")]
    Io,
}

/// A version 1 line (`PROXY TCP4 src dst sport dport\r\n`, CRLF included): the
/// client's address, or `None` for `PROXY UNKNOWN` (keep the connection's).
pub fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    let text = std::str::from_utf8(line).map_err(|_| ProxyError::Malformed)?;
    let text = text.strip_suffix("\r\n").ok_or(ProxyError::Malformed)?;
    let mut f = text.split(' ');
    if f.next() != Some("PROXY") {
        return Err(ProxyError::Missing);
    }
    let fam = f.next().ok_or(ProxyError::Malformed)?;
    if fam == "UNKNOWN" {
        return Ok(None);
    }
    let (src, _dst, sport) = (f.next(), f.next(), f.next());
    let dport = f.next();
    if f.next().is_some() || dport.is_none() {
        return Err(ProxyError::Malformed);
    }
    let ip: IpAddr = src
        .and_then(|s| s.parse().ok())
        .ok_or(ProxyError::Malformed)?;
    let port: u16 = sport
        .and_then(|s| s.parse().ok())
        .ok_or(ProxyError::Malformed)?;
    match (fam, ip) {
        ("TCP4", IpAddr::V4(_)) | ("TCP6", IpAddr::V6(_)) => Ok(Some(SocketAddr::new(ip, port))),
        _ => Err(ProxyError::Malformed),
    }
}

/// A version 2 header's address block after its 16-byte head: the client's
/// address, or `None` for a `LOCAL` command or an address family other than TCP
/// over IPv4 or IPv6 (keep the connection's).
pub fn parse_v2(head: &[u8; 16], rest: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    if head[..12] != V2_SIGNATURE {
        return Err(ProxyError::Missing);
    }
    let (ver, cmd) = (head[12] >> 4, head[12] & 0x0f);
    if ver != 2 || cmd > 1 {
        return Err(ProxyError::Malformed);
    }
    if cmd == 0 {
        return Ok(None); // LOCAL: the proxy's own connection (health checks)
    }
    let word = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match head[13] {
        0x11 if rest.len() >= 12 => {
            let ip = Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3]);
            Ok(Some(SocketAddr::new(ip.into(), word(&rest[8..10]))))
        }
        0x21 if rest.len() >= 36 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&rest[..16]);
            Ok(Some(SocketAddr::new(
                Ipv6Addr::from(a).into(),
                word(&rest[32..34]),
            )))
        }
        0x11 | 0x21 => Err(ProxyError::Malformed),
        _ => Ok(None),
    }
}

/// Read a version 1 or 2 header from `s`, exactly its bytes: the client's
/// address, or `None` when the header says to keep the connection's.
pub async fn read_header<S: AsyncRead + Unpin>(
    s: &mut S,
) -> Result<Option<SocketAddr>, ProxyError> {
    let mut head = [0u8; 16];
    s.read_exact(&mut head[..5])
        .await
        .map_err(|_| ProxyError::Io)?;
    if &head[..5] == b"PROXY" {
        let mut line = head[..5].to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= V1_MAX {
                return Err(ProxyError::Malformed);
            }
            line.push(s.read_u8().await.map_err(|_| ProxyError::Io)?);
        }
        return parse_v1(&line);
    }
    if head[..5] != V2_SIGNATURE[..5] {
        return Err(ProxyError::Missing);
    }
    s.read_exact(&mut head[5..])
        .await
        .map_err(|_| ProxyError::Io)?;
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    let mut rest = vec![0u8; len];
    s.read_exact(&mut rest).await.map_err(|_| ProxyError::Io)?;
    parse_v2(&head, &rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_lines() {
        assert_eq!(
            parse_v1(b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 2775\r\n"),
            Ok(Some("192.0.2.7:40000".parse().unwrap()))
        );
        assert_eq!(
            parse_v1(b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 2775\r\n"),
            Ok(Some("[2001:db8::7]:40000".parse().unwrap()))
        );
        assert_eq!(parse_v1(b"PROXY UNKNOWN\r\n"), Ok(None));
        assert_eq!(
            parse_v1(b"PROXY TCP4 2001:db8::7 1.2.3.4 1 2\r\n"),
            Err(ProxyError::Malformed)
        );
        assert_eq!(
            parse_v1(b"PROXY TCP4 192.0.2.7 1.2.3.4 1\r\n"),
            Err(ProxyError::Malformed)
        );
        assert_eq!(
            parse_v1(b"PROXY TCP4 192.0.2.7 1.2.3.4 1 2"),
            Err(ProxyError::Malformed)
        );
        assert_eq!(parse_v1(b"HELLO\r\n"), Err(ProxyError::Missing));
    }

    #[tokio::test]
    async fn exactly_the_header_is_read() {
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[
            0x21, 0x11, 0, 12, 192, 0, 2, 9, 198, 51, 100, 1, 0x9c, 0x40, 0x0a, 0xd7,
        ]);
        v2.extend_from_slice(b"SMPP");
        let mut r = &v2[..];
        assert_eq!(
            read_header(&mut r).await,
            Ok(Some("192.0.2.9:40000".parse().unwrap()))
        );
        assert_eq!(r, b"SMPP", "the SMPP bytes after it are left");
        let mut v1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 2775\r\nSMPP".to_vec();
        let mut r = &v1[..];
        assert_eq!(
            read_header(&mut r).await,
            Ok(Some("192.0.2.7:40000".parse().unwrap()))
        );
        assert_eq!(r, b"SMPP");
        // LOCAL (a health check) keeps the connection's address.
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(read_header(&mut &local[..]).await, Ok(None));
        // An SMPP bind where a header must be: refused.
        v1.clear();
        v1.extend_from_slice(&[0, 0, 0, 40, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(read_header(&mut &v1[..]).await, Err(ProxyError::Missing));
        // Endless version 1 line.
        let long = [b"PROXY ".as_slice(), &[b'x'; 200]].concat();
        assert_eq!(
            read_header(&mut &long[..]).await,
            Err(ProxyError::Malformed)
        );
    }
}
