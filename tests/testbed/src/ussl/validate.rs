//! Domain validation as a CA performs it: a TXT lookup through the DNS server it is given, and
//! a plain-HTTP GET of the validation file that follows no redirects and wants the exact bytes.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A resolver that asks only `server` (no cache), and `name` as a fully qualified name.
fn resolver_for(
    server: SocketAddr,
    name: &str,
) -> Result<(hickory_resolver::TokioResolver, hickory_proto::rr::Name), String> {
    use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = server.port();
    let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(server.ip(), true, vec![udp, tcp])]);
    let mut builder = hickory_resolver::TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    builder.options_mut().timeout = Duration::from_secs(2);
    builder.options_mut().cache_size = 0;
    let resolver = builder.build().map_err(|e| e.to_string())?;
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    let fqdn = hickory_proto::rr::Name::from_ascii(&fqdn).map_err(|e| format!("{name}: {e}"))?;
    Ok((resolver, fqdn))
}

/// Whether `name` has a TXT record whose value is exactly `expected`, asking `server`.
pub async fn dns_txt(server: SocketAddr, name: &str, expected: &str) -> Result<(), String> {
    let (resolver, fqdn) = resolver_for(server, name)?;
    let lookup =
        resolver.lookup(fqdn, hickory_proto::rr::RecordType::TXT).await.map_err(|e| format!("TXT {name}: {e}"))?;
    let found: Vec<String> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            hickory_proto::rr::RData::TXT(t) => {
                Some(t.txt_data.iter().map(|p| String::from_utf8_lossy(p)).collect::<String>())
            }
            _ => None,
        })
        .collect();
    if found.iter().any(|v| v == expected) {
        Ok(())
    } else {
        Err(format!("TXT {name} holds {found:?}, not {expected:?}"))
    }
}

/// Whether `name` is a CNAME whose target is `expected` (case-insensitive, trailing dot
/// ignored), asking `server`, as a CA checks a `DNS_CNAME` validation.
pub async fn dns_cname(server: SocketAddr, name: &str, expected: &str) -> Result<(), String> {
    let (resolver, fqdn) = resolver_for(server, name)?;
    let lookup = resolver
        .lookup(fqdn.clone(), hickory_proto::rr::RecordType::CNAME)
        .await
        .map_err(|e| format!("CNAME {name}: {e}"))?;
    let found: Vec<String> = lookup
        .answers()
        .iter()
        .filter(|r| r.name.to_lowercase() == fqdn.to_lowercase())
        .filter_map(|r| match &r.data {
            hickory_proto::rr::RData::CNAME(c) => Some(c.0.to_ascii().trim_end_matches('.').to_owned()),
            _ => None,
        })
        .collect();
    if found.iter().any(|v| v.eq_ignore_ascii_case(expected.trim_end_matches('.'))) {
        Ok(())
    } else {
        Err(format!("CNAME {name} points at {found:?}, not {expected:?}"))
    }
}

/// Whether `url` serves exactly `expected` with a 200 (redirects are failures). With `target`,
/// the connection goes there and the URL's host is sent as `Host`, as through an ingress.
pub async fn http_file(url: &str, target: Option<SocketAddr>, expected: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let host = uri.authority().map(|a| a.as_str().to_string()).ok_or("no host")?;
    let path = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let connect_uri = match target {
        Some(addr) => format!("http://{addr}{path}"),
        None => url.to_string(),
    };
    let request = http::Request::get(connect_uri)
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "USSL-simulator-validation")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
        .await
        .map_err(|_| format!("{url}: timed out"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if status != http::StatusCode::OK {
        return Err(format!("{url}: HTTP {status}"));
    }
    if body.as_ref() != expected.as_bytes() {
        return Err(format!("{url}: served {:?}, not {expected:?}", String::from_utf8_lossy(&body)));
    }
    Ok(())
}
