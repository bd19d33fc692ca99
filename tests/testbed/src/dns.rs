//! The test DNS server: an authoritative hickory-server on 127.0.0.1 (UDP and TCP, one random free
//! port) serving in-memory zones that tests change at runtime.
//!
//! Every zone gets an SOA and an NS record naming `ns1.<zone>`, whose A record is 127.0.0.1, so a
//! checker that discovers authoritative servers (SOA walk, NS lookup, address lookup) finds this
//! server again when it is told to use this server as its resolver and this port for name servers.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let dns = testbed::dns::TestDns::start(&["example.com"]).await?;
//! dns.set_txt("_dnsauth.example.com", &["token"]).await?;
//! println!("ask {}", dns.addr());
//! # Ok(()) }
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::rr::rdata::{A, CNAME, NS, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};

/// TTL of every record the server hands out.
pub const TTL: u32 = 60;

/// Errors from the test DNS server.
#[derive(Debug, thiserror::Error)]
pub enum TestDnsError {
    #[error("invalid DNS name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("{name} is not inside any zone this server serves ({zones})")]
    NotInZone { name: String, zones: String },
    #[error("the zone refused the record {0}")]
    Refused(String),
    #[error("cannot bind the DNS server: {0}")]
    Bind(#[from] std::io::Error),
    #[error("zone {zone}: {reason}")]
    Zone { zone: String, reason: String },
}

/// A running test DNS server. Dropping it stops the server.
pub struct TestDns {
    addr: SocketAddr,
    zones: Vec<(Name, Arc<InMemoryZoneHandler>)>,
    stats: Arc<Stats>,
    _server: Server<CountingHandler>,
}

#[derive(Default)]
struct Stats {
    queries: AtomicU64,
    delay_ms: AtomicU64,
}

impl TestDns {
    /// Starts a server authoritative for `zones` (e.g. `["example.com", "example.org"]`) on
    /// 127.0.0.1, UDP and TCP on the same random free port.
    pub async fn start(zones: &[&str]) -> Result<TestDns, TestDnsError> {
        let mut catalog = Catalog::new();
        let mut handlers = Vec::new();
        for zone in zones {
            let origin = fqdn(zone)?;
            let handler = Arc::new(new_zone(&origin)?);
            catalog.upsert(LowerName::from(&origin), vec![handler.clone() as Arc<dyn ZoneHandler>]);
            handlers.push((origin, handler));
        }
        let stats = Arc::new(Stats::default());
        let (udp, tcp) = bind_pair().await?;
        let addr = udp.local_addr()?;
        let mut server = Server::new(CountingHandler { catalog, stats: stats.clone() });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        // Longest zone first so that a sub-zone wins over its parent.
        handlers.sort_by_key(|(name, _)| std::cmp::Reverse(name.num_labels()));
        Ok(TestDns { addr, zones: handlers, stats, _server: server })
    }

    /// Where the server listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many DNS requests the server has received (UDP and TCP).
    pub fn queries(&self) -> u64 {
        self.stats.queries.load(Ordering::Relaxed)
    }

    /// Delays every answer by `delay` (to make a client time out); zero turns it off.
    pub fn set_delay(&self, delay: Duration) {
        self.stats.delay_ms.store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Replaces the TXT records at `name` with one record per value. Values longer than 255 bytes
    /// are split into several character-strings of one record, as DNS requires.
    pub async fn set_txt(&self, name: &str, values: &[&str]) -> Result<(), TestDnsError> {
        let (owner, zone) = self.locate(name)?;
        remove(zone, &owner, RecordType::TXT).await;
        for value in values {
            let chunks: Vec<String> =
                value.as_bytes().chunks(255).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
            let chunks = if chunks.is_empty() { vec![String::new()] } else { chunks };
            let record = Record::from_rdata(owner.clone(), TTL, RData::TXT(TXT::new(chunks)));
            upsert(zone, record).await?;
        }
        Ok(())
    }

    /// Removes every TXT record at `name`.
    pub async fn remove_txt(&self, name: &str) -> Result<(), TestDnsError> {
        let (owner, zone) = self.locate(name)?;
        remove(zone, &owner, RecordType::TXT).await;
        Ok(())
    }

    /// Sets the A record at `name` (replacing any).
    pub async fn set_a(&self, name: &str, ip: Ipv4Addr) -> Result<(), TestDnsError> {
        let (owner, zone) = self.locate(name)?;
        remove(zone, &owner, RecordType::A).await;
        upsert(zone, Record::from_rdata(owner, TTL, RData::A(A(ip)))).await
    }

    /// Makes `name` an alias of `target` (replacing any CNAME at `name`).
    pub async fn set_cname(&self, name: &str, target: &str) -> Result<(), TestDnsError> {
        let (owner, zone) = self.locate(name)?;
        let target = fqdn(target)?;
        upsert(zone, Record::from_rdata(owner, TTL, RData::CNAME(CNAME(target)))).await
    }

    /// Removes the CNAME at `name`.
    pub async fn remove_cname(&self, name: &str) -> Result<(), TestDnsError> {
        let (owner, zone) = self.locate(name)?;
        remove(zone, &owner, RecordType::CNAME).await;
        Ok(())
    }

    fn locate(&self, name: &str) -> Result<(Name, &InMemoryZoneHandler), TestDnsError> {
        let owner = fqdn(name)?;
        self.zones.iter().find(|(origin, _)| origin.zone_of(&owner)).map(|(_, zone)| (owner, zone.as_ref())).ok_or_else(
            || TestDnsError::NotInZone {
                name: name.to_owned(),
                zones: self.zones.iter().map(|(o, _)| o.to_string()).collect::<Vec<_>>().join(", "),
            },
        )
    }
}

fn fqdn(name: &str) -> Result<Name, TestDnsError> {
    let text = if name.ends_with('.') { name.to_owned() } else { format!("{name}.") };
    Name::from_str(&text).map_err(|e| TestDnsError::InvalidName { name: name.to_owned(), reason: e.to_string() })
}

fn new_zone(origin: &Name) -> Result<InMemoryZoneHandler, TestDnsError> {
    let zone_err = |reason: &str| TestDnsError::Zone { zone: origin.to_string(), reason: reason.into() };
    let ns1 = Name::from_str("ns1").and_then(|n| n.append_domain(origin)).map_err(|e| zone_err(&e.to_string()))?;
    let hostmaster =
        Name::from_str("hostmaster").and_then(|n| n.append_domain(origin)).map_err(|e| zone_err(&e.to_string()))?;
    let mut zone = InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
    let soa = SOA::new(ns1.clone(), hostmaster, 1, 3600, 600, 86400, TTL);
    let records = [
        Record::from_rdata(origin.clone(), TTL, RData::SOA(soa)),
        Record::from_rdata(origin.clone(), TTL, RData::NS(NS(ns1.clone()))),
        Record::from_rdata(ns1, TTL, RData::A(A(Ipv4Addr::LOCALHOST))),
    ];
    for record in records {
        if !zone.upsert_mut(record, 1) {
            return Err(zone_err("initial SOA/NS/A record refused"));
        }
    }
    Ok(zone)
}

async fn upsert(zone: &InMemoryZoneHandler, record: Record) -> Result<(), TestDnsError> {
    let text = record.to_string();
    let serial = zone.serial().await;
    if zone.upsert(record, serial).await { Ok(()) } else { Err(TestDnsError::Refused(text)) }
}

async fn remove(zone: &InMemoryZoneHandler, owner: &Name, record_type: RecordType) {
    zone.records_mut().await.remove(&RrKey::new(LowerName::from(owner), record_type));
}

async fn bind_pair() -> Result<(tokio::net::UdpSocket, tokio::net::TcpListener), TestDnsError> {
    let mut last = None;
    for _ in 0..20 {
        let udp = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let port = udp.local_addr()?.port();
        match tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(TestDnsError::Bind(last.unwrap_or_else(|| std::io::Error::other("no free port"))))
}

/// The catalog, plus a query counter and an optional delay.
struct CountingHandler {
    catalog: Catalog,
    stats: Arc<Stats>,
}

// `RequestHandler` is an `async_trait` trait; this is the signature the macro expands to, written
// out so the testbed does not need the async-trait crate.
impl RequestHandler for CountingHandler {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: 'async_trait + ResponseHandler,
        T: 'async_trait + Time,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.stats.queries.fetch_add(1, Ordering::Relaxed);
            let delay = self.stats.delay_ms.load(Ordering::Relaxed);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            self.catalog.handle_request::<R, T>(request, response_handle).await
        })
    }
}
