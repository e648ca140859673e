//! The SSRF guard: webhook URLs may not reach loopback, private, link-local
//! (cloud metadata at 169.254.169.254 included), unspecified or otherwise
//! non-public addresses, unless `EXPEREON_WEBHOOK_ALLOW_PRIVATE=true`.
//!
//! Checked twice: when an endpoint is created or changed (the URL's literal
//! address or `localhost` name, and what the name resolves to now), and at
//! every delivery after resolving the name again. The delivery then connects
//! to exactly the address that was checked (the client is built with that
//! resolution pinned), so a DNS answer that changes between check and connect
//! (DNS rebinding) cannot slip through. Redirects are never followed.

use reqwest::Url;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

pub const MAX_URL_CHARS: usize = 2048;

/// Whether an address is off limits for webhooks.
pub fn forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()                       // 127/8
        || ip.is_private()                 // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local()              // 169.254/16, metadata services
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()               // 224/4
        || a == 0                          // 0/8 "this network"
        || (a == 100 && (64..128).contains(&b)) // 100.64/10 carrier-grade NAT
        || (a == 192 && b == 0 && c == 0)  // 192.0.0/24 IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // 198.18/15 benchmarking
        || a >= 240 // 240/4 reserved
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00       // fc00::/7 unique local
        || (s[0] & 0xffc0) == 0xfe80       // fe80::/10 link-local
        || (s[0] & 0xffc0) == 0xfec0       // fec0::/10 site-local (deprecated)
        || s[..6] == [0, 0, 0, 0, 0, 0]    // ::a.b.c.d, IPv4-compatible (deprecated)
        || s[..3] == [0x64, 0xff9b, 1]     // 64:ff9b:1::/48, NAT64 for local use
        || s[..4] == [0x100, 0, 0, 0]      // 100::/64 discard-only
        || s[..2] == [0x2001, 0xdb8]       // 2001:db8::/32 documentation
        || embedded_v4(ip).into_iter().flatten().any(forbidden_v4)
}

/// The IPv4 addresses an IPv6 address carries, in the forms that reach
/// them: a private IPv4 target must not be reachable by spelling it as IPv6.
fn embedded_v4(ip: Ipv6Addr) -> [Option<Ipv4Addr>; 2] {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    match s {
        // ::ffff:a.b.c.d (mapped) and ::ffff:0:a.b.c.d (translated, RFC 2765)
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0xffff, 0, hi, lo] => {
            [Some(v4(hi, lo)), None]
        }
        // 64:ff9b::a.b.c.d, NAT64 (RFC 6052)
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => [Some(v4(hi, lo)), None],
        // 2002:aabb:ccdd::/48, 6to4 (RFC 3056)
        [0x2002, hi, lo, ..] => [Some(v4(hi, lo)), None],
        // 2001:0:server::client-inverted, Teredo (RFC 4380)
        [0x2001, 0, shi, slo, _, _, chi, clo] => [Some(v4(shi, slo)), Some(v4(!chi, !clo))],
        _ => [None, None],
    }
}

fn is_localhost_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost")
}

enum Host<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

/// The URL's host: an address (the URL parser already turned forms like
/// `2130706433` or `0x7f.1` into one) or a name.
fn host_of(url: &Url) -> Option<Host<'_>> {
    let h = url.host_str().filter(|h| !h.is_empty())?;
    let bare = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    Some(match bare.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(h),
    })
}

/// Syntax and literal checks: http(s), at most [`MAX_URL_CHARS`], a host, and
/// (guard on) no forbidden literal address or `localhost` name.
pub fn check_url(raw: &str, allow_private: bool) -> Result<Url, String> {
    if raw.chars().count() > MAX_URL_CHARS {
        return Err(format!("url is longer than {MAX_URL_CHARS} characters"));
    }
    let url = Url::parse(raw).map_err(|e| format!("url is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("url must be http or https".into());
    }
    let host = host_of(&url).ok_or("url must have a host")?;
    if !allow_private {
        let refused = match host {
            Host::Ip(ip) => forbidden_ip(ip),
            Host::Name(name) => is_localhost_name(name),
        };
        if refused {
            return Err(
                "url points at a loopback, private, link-local or otherwise non-public address"
                    .into(),
            );
        }
    }
    Ok(url)
}

/// Where a delivery may connect: the URL's host, port and the checked addresses.
#[derive(Debug, Clone)]
pub struct Target {
    /// Set for a name (the client pins it to `addrs`); None for a literal address.
    pub domain: Option<String>,
    pub addrs: Vec<SocketAddr>,
}

/// Resolves the URL's host now and checks every address (guard on: all must
/// be public, or the delivery is refused).
pub async fn resolve(url: &Url, allow_private: bool) -> Result<Target, String> {
    let port = url.port_or_known_default().ok_or("url has no port")?;
    let (domain, addrs) = match host_of(url).ok_or("url has no host")? {
        Host::Ip(ip) => (None, vec![SocketAddr::new(ip, port)]),
        Host::Name(name) => {
            if !allow_private && is_localhost_name(name) {
                return Err("refused: url names localhost".into());
            }
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
                .await
                .map_err(|e| format!("cannot resolve {name}: {e}"))?
                .collect();
            if addrs.is_empty() {
                return Err(format!("{name} resolves to no address"));
            }
            (Some(name.to_string()), addrs)
        }
    };
    if !allow_private {
        if let Some(bad) = addrs.iter().find(|a| forbidden_ip(a.ip())) {
            return Err(format!(
                "refused: the url resolves to a non-public address ({})",
                bad.ip()
            ));
        }
    }
    Ok(Target { domain, addrs })
}

/// At creation and update: the literal checks, then (guard on, best effort)
/// what the name resolves to now. A name that does not resolve yet is
/// accepted; delivery checks again.
pub async fn check_endpoint_url(raw: &str, allow_private: bool) -> Result<Url, String> {
    let url = check_url(raw, allow_private)?;
    if allow_private {
        return Ok(url);
    }
    match tokio::time::timeout(Duration::from_secs(2), resolve(&url, false)).await {
        Ok(Err(e)) if e.starts_with("refused") => Err(e),
        _ => Ok(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(u: &str) -> bool {
        check_url(u, false).is_err()
    }

    #[test]
    fn private_and_special_addresses_are_refused() {
        for u in [
            "http://127.0.0.1/",
            "http://127.1.2.3:8080/x",
            "http://10.0.0.1/",
            "http://172.16.5.4/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[::]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[::ffff:0:7f00:1]/",      // translated 127.0.0.1
            "http://[::ffff:0:a00:1]/",       // translated 10.0.0.1
            "http://[::127.0.0.1]/",          // compatible
            "http://[64:ff9b::7f00:1]/",      // NAT64 127.0.0.1
            "http://[64:ff9b::a9fe:a9fe]/",   // NAT64 169.254.169.254
            "http://[64:ff9b:1::5db8:d822]/", // NAT64 for local use
            "http://[2002:7f00:1::]/",        // 6to4 127.0.0.1
            "http://[2002:c0a8:101::1]/",     // 6to4 192.168.1.1
            "http://[2001:0:7f00:1::1]/",     // Teredo server 127.0.0.1
            "http://[2001:0:5db8:d822:0:0:f5ff:fffe]/", // Teredo client 10.0.0.1
            "http://[100::1]/",
            "http://[2001:db8::1]/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://app.localhost/",
            "http://2130706433/", // 127.0.0.1 as a decimal number
            "http://0x7f.1/",
            "http://100.64.0.1/",
            "ftp://example.com/",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(refused(u), "{u} should be refused");
        }
    }

    #[test]
    fn public_addresses_pass_and_the_guard_can_be_lifted() {
        for u in [
            "https://example.com/hooks",
            "http://93.184.216.34/",
            "https://[2606:2800:220:1::]/",
            "http://[::ffff:5db8:d822]/", // mapped public 93.184.216.34
            "http://[64:ff9b::5db8:d822]/", // NAT64 of a public address
            "http://[2002:5db8:d822::1]/", // 6to4 of a public address
            "http://[2001:0:5db8:d822:0:0:a247:2dd9]/", // Teredo, both public
        ] {
            assert!(!refused(u), "{u} should pass");
        }
        assert!(check_url("http://127.0.0.1:9000/", true).is_ok());
        assert!(check_url("http://172.15.0.1/", false).is_ok());
        assert!(check_url("http://172.32.0.1/", false).is_ok());
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert!(check_url(&long, true).is_err());
    }

    #[tokio::test]
    async fn resolution_is_checked_too() {
        let url = Url::parse("http://127.0.0.1:1/").unwrap();
        assert!(resolve(&url, false).await.is_err());
        assert!(resolve(&url, true).await.is_ok());
        let named = Url::parse("http://localhost:1/").unwrap();
        assert!(resolve(&named, false).await.is_err());
        let target = resolve(&named, true).await.unwrap();
        assert_eq!(target.domain.as_deref(), Some("localhost"));
        assert!(target
            .addrs
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 1));
    }
}
