//! Publishing DNS validation records: which `ClusterDNSZone` a record goes to, RFC 2136 dynamic
//! updates signed with TSIG, and the external-dns `DNSEndpoint`. Only values certorder added are
//! ever removed: an update deletes one exact value (RFC 2136 §2.5.4), never the whole RRset, and
//! adding a value that is there already changes nothing, so every call is safe to repeat.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode, update_message};
use hickory_proto::rr::rdata::{CNAME, TXT};
use hickory_proto::rr::{Name, RData, RecordSet, RecordType, TSigner};
use kube::ResourceExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::{ClusterDNSZone, PublishedRecord, TsigAlgorithm};

/// Default TTL of published records.
pub const DEFAULT_TTL: u32 = 60;

/// `TXT` or `CNAME`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Txt,
    Cname,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Txt => "TXT",
            RecordKind::Cname => "CNAME",
        }
    }

    pub fn parse(text: &str) -> Option<RecordKind> {
        match text {
            "TXT" => Some(RecordKind::Txt),
            "CNAME" => Some(RecordKind::Cname),
            _ => None,
        }
    }
}

/// Lowercase, no trailing dot.
pub fn canonical(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `name` is `zone` or below it.
pub fn in_zone(name: &str, zone: &str) -> bool {
    let (name, zone) = (canonical(name), canonical(zone));
    name == zone || name.ends_with(&format!(".{zone}"))
}

/// The zone a record at `record_name` is published with: the one `explicit` names (which must
/// cover the name), else the one whose zone is the longest suffix of the name (ties: the first
/// by object name). `Ok(None)`: no zone covers it (a person creates the record).
pub fn select_zone<'a>(
    zones: impl IntoIterator<Item = &'a ClusterDNSZone>,
    explicit: Option<&str>,
    record_name: &str,
) -> Result<Option<&'a ClusterDNSZone>, String> {
    let mut sorted: Vec<&ClusterDNSZone> = zones.into_iter().collect();
    if let Some(wanted) = explicit {
        let Some(zone) = sorted.into_iter().find(|z| z.name_any() == wanted) else {
            return Err(format!(
                "ClusterDNSZone {wanted:?} (spec.domainValidation.dns.zoneRef) does not exist: create it or remove zoneRef"
            ));
        };
        if !in_zone(record_name, &zone.spec.zone) {
            return Err(format!(
                "ClusterDNSZone {wanted:?} is for zone {}, which does not hold {record_name}: point the record name at that zone by CNAME, or name another zone in spec.domainValidation.dns.zoneRef",
                zone.spec.zone
            ));
        }
        return Ok(Some(zone));
    }
    let mut best: Option<&ClusterDNSZone> = None;
    sorted.sort_by_key(|z| z.name_any());
    for zone in sorted {
        if !in_zone(record_name, &zone.spec.zone) {
            continue;
        }
        if best.is_none_or(|b| canonical(&zone.spec.zone).len() > canonical(&b.spec.zone).len()) {
            best = Some(zone);
        }
    }
    Ok(best)
}

fn fqdn(name: &str) -> Result<Name, String> {
    Name::from_ascii(format!("{}.", canonical(name))).map_err(|e| format!("{name:?} is not a DNS name: {e}"))
}

/// Parses `host:port`, `ip`, `[v6]:port`; the port defaults to 53. Host names are resolved.
pub async fn resolve_nameserver(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = text.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("{text:?}: the port is not a number"))?),
        None => (text, 53),
    };
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve the name server {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("the name server {host} has no address"))
}

/// Sends RFC 2136 updates for one zone, signed with a TSIG key, over TCP.
pub struct Rfc2136Client {
    pub server: SocketAddr,
    pub zone: String,
    signer: TSigner,
    pub timeout: Duration,
}

impl std::fmt::Debug for Rfc2136Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the key
        f.debug_struct("Rfc2136Client").field("server", &self.server).field("zone", &self.zone).finish()
    }
}

impl Rfc2136Client {
    /// `secret_base64` is the TSIG secret as `tsig-keygen` prints it.
    pub fn new(
        server: SocketAddr,
        zone: &str,
        key_name: &str,
        algorithm: TsigAlgorithm,
        secret_base64: &str,
    ) -> Result<Rfc2136Client, String> {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret_base64.trim())
            .map_err(|_| "the TSIG secret is not base64 (store it as tsig-keygen prints it)".to_owned())?;
        if key.is_empty() {
            return Err("the TSIG secret is empty".into());
        }
        let algorithm = match algorithm {
            TsigAlgorithm::HMACSHA256 => hickory_proto::rr::rdata::tsig::TsigAlgorithm::HmacSha256,
            TsigAlgorithm::HMACSHA384 => hickory_proto::rr::rdata::tsig::TsigAlgorithm::HmacSha384,
            TsigAlgorithm::HMACSHA512 => hickory_proto::rr::rdata::tsig::TsigAlgorithm::HmacSha512,
        };
        let signer = TSigner::new(key, algorithm, fqdn(key_name)?, 300).map_err(|e| format!("TSIG key: {e}"))?;
        Ok(Rfc2136Client { server, zone: canonical(zone), signer, timeout: Duration::from_secs(10) })
    }

    fn rrset(&self, name: &str, kind: RecordKind, value: &str, ttl: u32) -> Result<(RecordSet, Name), String> {
        if !in_zone(name, &self.zone) {
            return Err(format!("{name} is not in zone {}", self.zone));
        }
        let owner = fqdn(name)?;
        let (rtype, rdata) = match kind {
            RecordKind::Txt => (RecordType::TXT, RData::TXT(TXT::new(vec![value.to_owned()]))),
            RecordKind::Cname => (RecordType::CNAME, RData::CNAME(CNAME(fqdn(value)?))),
        };
        let mut rrset = RecordSet::with_ttl(owner, rtype, ttl);
        rrset.add_rdata(rdata);
        Ok((rrset, fqdn(&self.zone)?))
    }

    /// Adds one value (a value already there is left as it is).
    pub async fn add(&self, name: &str, kind: RecordKind, value: &str, ttl: u32) -> Result<(), String> {
        let (rrset, zone) = self.rrset(name, kind, value, ttl)?;
        let message = update_message::append(rrset, zone, false, false);
        self.send(message, &format!("add {} {name}", kind.as_str())).await
    }

    /// Removes exactly this value; other values at the name stay. Removing what is gone is done.
    pub async fn remove(&self, name: &str, kind: RecordKind, value: &str) -> Result<(), String> {
        let (rrset, zone) = self.rrset(name, kind, value, 0)?;
        let message = update_message::delete_by_rdata(rrset, zone, false);
        self.send(message, &format!("remove {} {name}", kind.as_str())).await
    }

    async fn send(&self, mut message: Message, what: &str) -> Result<(), String> {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let verifier = message.finalize(&self.signer, now).map_err(|e| format!("cannot sign the update: {e}"))?;
        let bytes = message.to_vec().map_err(|e| format!("cannot encode the update: {e}"))?;
        let id = message.metadata.id;
        let server = self.server;
        let answer_bytes = tokio::time::timeout(self.timeout, tcp_exchange(server, &bytes))
            .await
            .map_err(|_| format!("{what}: no answer from {server} within {:?}", self.timeout))??;
        let answer = Message::from_vec(&answer_bytes).map_err(|e| format!("unreadable answer from {server} ({e})"))?;
        if answer.metadata.id != id {
            return Err(format!("{server} answered with a wrong id"));
        }
        match answer.metadata.response_code {
            // Success is believed only when the answer is signed with the same key (RFC 8945 §5.3):
            // an unsigned or forged NOERROR would leave a challenge unpublished while status says
            // it is.
            ResponseCode::NoError => match verifier {
                Some(mut verifier) => verifier.verify(&answer_bytes).map(|_| ()).map_err(|e| {
                    if e.to_string().contains("truncated") {
                        return format!(
                            "{what}: {server} signs its answers with a truncated MAC (a key such as hmac-sha256-128), which certorder does not accept: use a full-length key (tsig-keygen -a hmac-sha256)"
                        );
                    }
                    format!(
                        "{what}: {server} answered NOERROR without a valid TSIG signature of key {} ({e}): the answer cannot be trusted; check that nothing else answers on that address and that the server signs its answers",
                        self.signer.signer_name()
                    )
                }),
                None => Ok(()),
            },
            ResponseCode::NotAuth => Err(format!(
                "{what}: {server} refused the update as NOTAUTH: the TSIG key is not accepted (check spec.rfc2136.tsigKeyName, tsigAlgorithm and the secret) or the server is not authoritative for {}",
                self.zone
            )),
            ResponseCode::Refused => Err(format!(
                "{what}: {server} REFUSED the update: allow this TSIG key to update zone {} (BIND: update-policy or allow-update)",
                self.zone
            )),
            ResponseCode::NotZone => Err(format!("{what}: {server} says the name is not in zone {}", self.zone)),
            other => Err(format!("{what}: {server} answered {other}")),
        }
    }
}

/// One DNS message over TCP (RFC 1035 §4.2.2: two length bytes, then the message); the answer's
/// bytes, as signed.
async fn tcp_exchange(server: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut stream = tokio::net::TcpStream::connect(server)
        .await
        .map_err(|e| format!("cannot connect to the name server {server} over TCP ({e})"))?;
    let len = u16::try_from(bytes.len()).map_err(|_| "update too large".to_owned())?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    stream.write_all(&out).await.map_err(|e| format!("sending to {server} failed ({e})"))?;
    let mut len_buf = [0u8; 2];
    stream.read_exact(&mut len_buf).await.map_err(|e| format!("reading from {server} failed ({e})"))?;
    let mut buf = vec![0u8; u16::from_be_bytes(len_buf) as usize];
    stream.read_exact(&mut buf).await.map_err(|e| format!("reading from {server} failed ({e})"))?;
    Ok(buf)
}

/// Name of the order's `DNSEndpoint`: one per order, holding all its records.
pub fn endpoint_name(order_name: &str) -> String {
    let name = format!("{order_name}-dcv");
    if name.len() <= 253 { name } else { name[name.len() - 253..].trim_start_matches(['-', '.']).to_owned() }
}

/// The external-dns `DNSEndpoint` (externaldns.k8s.io/v1alpha1) holding `records`: one endpoint
/// per name and type, its targets the values.
pub fn dns_endpoint(
    name: &str,
    namespace: &str,
    labels: &std::collections::BTreeMap<String, String>,
    owner: Option<Value>,
    records: &[PublishedRecord],
    ttl: u32,
) -> Value {
    let mut grouped: std::collections::BTreeMap<(String, String), Vec<String>> = Default::default();
    for r in records {
        let value = if r.type_ == "TXT" { r.value.clone() } else { canonical(&r.value) };
        let targets = grouped.entry((canonical(&r.name), r.type_.clone())).or_default();
        if !targets.contains(&value) {
            targets.push(value);
        }
    }
    let endpoints: Vec<Value> = grouped
        .into_iter()
        .map(|((dns_name, record_type), targets)| {
            json!({"dnsName": dns_name, "recordType": record_type, "targets": targets, "recordTTL": ttl})
        })
        .collect();
    let mut all_labels = labels.clone();
    all_labels.insert(crate::api::MANAGED_BY_LABEL.into(), crate::api::MANAGER.into());
    let mut metadata = json!({"name": name, "namespace": namespace, "labels": all_labels});
    if let Some(owner) = owner {
        metadata["ownerReferences"] = json!([owner]);
    }
    json!({
        "apiVersion": "externaldns.k8s.io/v1alpha1",
        "kind": "DNSEndpoint",
        "metadata": metadata,
        "spec": {"endpoints": endpoints},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ClusterDNSZoneSpec;

    fn zone(name: &str, zone: &str) -> ClusterDNSZone {
        ClusterDNSZone::new(
            name,
            ClusterDNSZoneSpec { zone: zone.into(), rfc2136: None, external_dns: Some(Default::default()), ttl: None },
        )
    }

    #[test]
    fn the_longest_matching_zone_wins_and_an_explicit_one_must_cover_the_name() {
        let zones = vec![zone("a", "example.com"), zone("b", "shop.example.com"), zone("c", "example.org")];
        let pick = |explicit, name| select_zone(&zones, explicit, name).map(|z| z.map(|z| z.name_any()));
        assert_eq!(pick(None, "_dnsauth.shop.example.com").unwrap().as_deref(), Some("b"));
        assert_eq!(pick(None, "_dnsauth.www.example.com").unwrap().as_deref(), Some("a"));
        assert_eq!(pick(None, "_dnsauth.EXAMPLE.ORG.").unwrap().as_deref(), Some("c"));
        // a suffix of the text is not a parent zone
        assert_eq!(pick(None, "_dnsauth.badexample.org").unwrap(), None);
        assert_eq!(pick(Some("a"), "_dnsauth.shop.example.com").unwrap().as_deref(), Some("a"));
        let e = pick(Some("c"), "_dnsauth.shop.example.com").unwrap_err();
        assert!(e.contains("does not hold _dnsauth.shop.example.com"), "{e}");
        let e = pick(Some("x"), "_dnsauth.shop.example.com").unwrap_err();
        assert!(e.contains("\"x\"") && e.contains("does not exist"), "{e}");
    }

    #[test]
    fn a_tsig_secret_that_is_not_base64_is_refused_without_showing_it() {
        let addr: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let e =
            Rfc2136Client::new(addr, "example.com", "k", TsigAlgorithm::HMACSHA256, "not base64 !!s3cret").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
        let client = Rfc2136Client::new(addr, "example.com", "k", TsigAlgorithm::HMACSHA256, "c2VjcmV0").unwrap();
        assert!(!format!("{client:?}").contains("c2VjcmV0"));
    }

    /// A name server stand-in on loopback that answers every update with `answer(request)`.
    async fn answering(answer: impl Fn(Message) -> Message + Send + 'static) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut len = [0u8; 2];
                stream.read_exact(&mut len).await.unwrap();
                let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
                stream.read_exact(&mut buf).await.unwrap();
                let reply = answer(Message::from_vec(&buf).unwrap()).to_vec().unwrap();
                let mut out = (reply.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&reply);
                stream.write_all(&out).await.unwrap();
            }
        });
        addr
    }

    fn reply_to(request: &Message, code: ResponseCode) -> Message {
        let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
        reply.metadata.response_code = code;
        reply
    }

    #[tokio::test]
    async fn a_noerror_answer_without_the_keys_signature_is_not_believed() {
        // Unsigned, as a server that ignored the TSIG (or anything else on that address) answers.
        let addr = answering(|request| reply_to(&request, ResponseCode::NoError)).await;
        let client = Rfc2136Client::new(addr, "example.com", "k", TsigAlgorithm::HMACSHA256, "c2VjcmV0").unwrap();
        let e = client.add("_dnsauth.example.com", RecordKind::Txt, "v", 60).await.unwrap_err();
        assert!(e.contains("without a valid TSIG signature of key k."), "{e}");
        assert!(!e.contains("c2VjcmV0") && !e.contains("secret"), "{e}");

        // Signed, but with another key of the same name.
        let forger = TSigner::new(
            b"another".to_vec(),
            hickory_proto::rr::rdata::tsig::TsigAlgorithm::HmacSha256,
            Name::from_ascii("k.").unwrap(),
            300,
        )
        .unwrap();
        let addr = answering(move |request| {
            let mut reply = reply_to(&request, ResponseCode::NoError);
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            reply.finalize(&forger, now).unwrap();
            reply
        })
        .await;
        let client = Rfc2136Client::new(addr, "example.com", "k", TsigAlgorithm::HMACSHA256, "c2VjcmV0").unwrap();
        let e = client.remove("_dnsauth.example.com", RecordKind::Txt, "v").await.unwrap_err();
        assert!(e.contains("without a valid TSIG signature"), "{e}");

        // A refusal is a failure whether signed or not, and says what to fix.
        let addr = answering(|request| reply_to(&request, ResponseCode::Refused)).await;
        let client = Rfc2136Client::new(addr, "example.com", "k", TsigAlgorithm::HMACSHA256, "c2VjcmV0").unwrap();
        let e = client.add("_dnsauth.example.com", RecordKind::Txt, "v", 60).await.unwrap_err();
        assert!(e.contains("REFUSED") && e.contains("update-policy"), "{e}");
    }

    #[test]
    fn the_endpoint_groups_values_by_name_and_type() {
        let r = |name: &str, value: &str| PublishedRecord {
            name: name.into(),
            type_: "TXT".into(),
            value: value.into(),
            zone: "z".into(),
        };
        let e = dns_endpoint(
            "o-dcv",
            "shop",
            &Default::default(),
            None,
            &[r("_dnsauth.a.example.com", "1"), r("_dnsauth.a.example.com.", "2"), r("_dnsauth.b.example.com", "3")],
            60,
        );
        let endpoints = e["spec"]["endpoints"].as_array().unwrap();
        assert_eq!(endpoints.len(), 2);
        assert_eq!(endpoints[0]["targets"], json!(["1", "2"]));
        assert_eq!(endpoints[0]["recordType"], "TXT");
        assert_eq!(e["metadata"]["labels"]["app.kubernetes.io/managed-by"], "certorder");
    }
}
