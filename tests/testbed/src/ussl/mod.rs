//! A simulator of UCloud's USSL API for tests: the documented actions and answer shapes, the
//! documented SHA1 signature (RetCode 171 on a bad one), required parameters, orders in memory,
//! an organization review a test approves or rejects (or sets to automatic), real domain
//! validation (DNS TXT through the test DNS server it is given; files over plain HTTP, no
//! redirects followed), real certificates from its own CA for the submitted CSR, downloads in
//! both shapes, and faults on demand (RetCode 153 or 150, or garbage, for the next N calls).
//!
//! ```no_run
//! # async fn demo(dns: std::net::SocketAddr) {
//! let sim = testbed::ussl::UsslSim::start("pub", "priv", dns).await;
//! println!("endpoint {}", sim.endpoint());
//! sim.fail_next(2, testbed::ussl::Fault::RetCode(153));
//! assert_eq!(sim.purchases(), 0);
//! # }
//! ```

mod ca;
pub mod validate;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

pub use ca::{TestCa, csr_names};

/// How the organization review of OV/EV orders is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Review {
    /// The test calls [`UsslSim::approve`] or [`UsslSim::reject`].
    Manual,
    /// Approved as soon as the letter is uploaded.
    Automatic,
}

/// What the next calls answer instead of doing their work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A gateway error with this RetCode (153 rate limited, 150 unavailable, …).
    RetCode(i64),
    /// HTTP 502 with an HTML body.
    Garbage,
    /// The call is carried out (a purchase is committed and paid for), then the answer is lost:
    /// the client gets HTTP 502 with an HTML body, as from a gateway that timed out on the way back.
    LoseAnswer,
    /// The call is carried out at once and answered only this much later (a slow vendor).
    SlowAnswer(Duration),
}

/// Which shape `DownloadCertificate` answers in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownloadShape {
    /// The newer answer: `Certificate` / `CertCA` with inline PEM `FileData`.
    Inline,
    /// The older answer: `CertificateUrl` pointing at a zip.
    Zip,
}

/// State codes the simulator uses.
pub mod state {
    pub const PENDING_INFO: &str = "PENDING_INFO";
    pub const PENDING_LETTER: &str = "PENDING_CONFIRM_LETTER";
    pub const REVIEWING: &str = "ORG_REVIEWING";
    pub const DOMAIN_AUTH: &str = "DOMAIN_AUTH";
    pub const COMPLETED: &str = "COMPLETED";
    pub const REJECTED: &str = "REJECTED";
    pub const CANCELLED: &str = "CANCELLED";
}

/// An order as the simulator holds it.
#[derive(Clone, Debug)]
pub struct SimOrder {
    pub id: i64,
    pub brand: String,
    pub product: String,
    pub domains_count: i64,
    pub domains: Vec<String>,
    pub method: String,
    pub csr: Option<String>,
    pub state: String,
    pub reject_reason: Option<String>,
    pub letter: Option<Vec<u8>>,
    /// Token per domain of the current submission.
    pub tokens: BTreeMap<String, String>,
    pub chain: Option<String>,
    pub create_time_ms: i64,
    pub submissions: u32,
    pub company: Option<String>,
    /// Issued by a CA other than the simulator's (see [`UsslSim::issue_from_another_ca`]).
    pub foreign_issuer: bool,
    /// Years bought (`ValidYear`).
    pub valid_year: i64,
    /// When each term renewal was paid (seconds).
    pub renewals: Vec<i64>,
    /// DNS validation asks for `DNS_CNAME` (see [`UsslSim::set_dns_cname`]) rather than `DNS_TXT`.
    pub dns_cname: bool,
    /// The CNAME's first label instead of `_<token>` (see [`UsslSim::set_dns_cname_label`]).
    pub dns_cname_label: Option<String>,
}

impl SimOrder {
    /// The DNS record the CA wants for one domain's token: (name, value). `DNS_TXT`:
    /// `_dnsauth.<domain>` holding the token; `DNS_CNAME` (Sectigo-style DCV):
    /// `_<token>.<domain>` CNAME `<token>.dcv.ussl-sim.test`.
    pub fn dns_record(&self, domain: &str, token: &str) -> (String, String) {
        let base = domain.trim_start_matches("*.");
        if self.dns_cname {
            let label = self.dns_cname_label.clone().unwrap_or_else(|| format!("_{token}"));
            (format!("{label}.{base}"), format!("{token}.dcv.ussl-sim.test"))
        } else {
            (format!("_dnsauth.{base}"), token.to_owned())
        }
    }
}

impl SimOrder {
    fn needs_review(&self) -> bool {
        let p = self.product.to_ascii_uppercase();
        p.contains("OV") || p.contains("EV")
    }
}

struct Inner {
    next_id: i64,
    orders: BTreeMap<i64, SimOrder>,
    review: Review,
    faults: VecDeque<Fault>,
    /// Faults for the next calls of one action: (action, fault).
    action_faults: VecDeque<(String, Fault)>,
    purchase_delay: Duration,
    /// Certificates issued from now on come from [`Sim::foreign_ca`].
    foreign_issuer: bool,
    /// New orders appear in GetCertificateList only this long after their purchase.
    list_lag: Duration,
    shape: DownloadShape,
    files: HashMap<String, Vec<u8>>,
    calls: BTreeMap<String, usize>,
    http_target: Option<SocketAddr>,
    /// Orders bought from now on ask for `DNS_CNAME` validation.
    dns_cname: bool,
    dns_cname_label: Option<String>,
    /// The account's rate limit, as a bucket of `per_second` calls refilled continuously: a
    /// call finding it empty is refused with RetCode 153. `None`: no limit.
    rate_limit: Option<RateLimit>,
    /// Calls refused with RetCode 153 by the rate limit.
    rate_limited: usize,
}

struct RateLimit {
    per_second: f64,
    tokens: f64,
    at: std::time::Instant,
}

impl RateLimit {
    /// Takes a call's token, or says the call is over the limit.
    fn take(&mut self) -> bool {
        let now = std::time::Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.per_second).min(self.per_second);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Sim {
    public_key: String,
    /// Replaced by [`UsslSim::rotate_private_key`].
    private_key: Mutex<String>,
    dns: SocketAddr,
    base_url: String,
    ca: TestCa,
    /// A CA nobody trusts, for certificates that must be refused.
    foreign_ca: TestCa,
    purchases: AtomicUsize,
    inner: Mutex<Inner>,
}

/// A running simulator. Dropping it stops the server.
pub struct UsslSim {
    sim: Arc<Sim>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for UsslSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl UsslSim {
    /// Starts on 127.0.0.1 (a random port), accepting the key pair `public_key`/`private_key`
    /// and validating DNS through the name server at `dns`.
    pub async fn start(public_key: &str, private_key: &str, dns: SocketAddr) -> UsslSim {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the USSL simulator");
        let addr = listener.local_addr().expect("local address");
        let sim = Arc::new(Sim {
            public_key: public_key.into(),
            private_key: Mutex::new(private_key.into()),
            dns,
            base_url: format!("http://{addr}"),
            ca: TestCa::generate(),
            foreign_ca: TestCa::generate(),
            purchases: AtomicUsize::new(0),
            inner: Mutex::new(Inner {
                next_id: 1000,
                orders: BTreeMap::new(),
                review: Review::Manual,
                faults: VecDeque::new(),
                action_faults: VecDeque::new(),
                purchase_delay: Duration::ZERO,
                foreign_issuer: false,
                list_lag: Duration::ZERO,
                shape: DownloadShape::Inline,
                files: HashMap::new(),
                calls: BTreeMap::new(),
                http_target: None,
                dns_cname: false,
                dns_cname_label: None,
                rate_limit: None,
                rate_limited: 0,
            }),
        });
        let router = Router::new()
            .route("/", get(api_get).post(api_post))
            .route("/files/{name}", get(file))
            .with_state(sim.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        UsslSim { sim, addr, task }
    }

    /// The endpoint to configure in `spec.ucloud.endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The root CA every issued chain leads to.
    pub fn ca_pem(&self) -> String {
        self.sim.ca.cert_pem().to_string()
    }

    /// Successful `PurchaseCertificate` calls so far.
    pub fn purchases(&self) -> usize {
        self.sim.purchases.load(Ordering::SeqCst)
    }

    /// Calls of `action` received (signed or not, faulted or not).
    pub fn calls(&self, action: &str) -> usize {
        self.inner().calls.get(action).copied().unwrap_or(0)
    }

    /// Calls of every action received (signed or not, faulted or not).
    pub fn total_calls(&self) -> usize {
        self.inner().calls.values().sum()
    }

    pub fn set_review(&self, review: Review) {
        self.inner().review = review;
    }

    /// The next `n` API calls answer `fault`.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        let mut inner = self.inner();
        for _ in 0..n {
            inner.faults.push_back(fault.clone());
        }
    }

    /// The next `n` calls of `action` answer `fault` (other calls are served as usual).
    pub fn fail_next_of(&self, action: &str, n: usize, fault: Fault) {
        let mut inner = self.inner();
        for _ in 0..n {
            inner.action_faults.push_back((action.to_string(), fault.clone()));
        }
    }

    /// `RenewCertificateOrder` calls carried out (term renewals paid).
    pub fn term_renewals(&self) -> usize {
        self.inner().orders.values().map(|o| o.renewals.len()).sum()
    }

    /// Refuses calls beyond `per_second` a second (on average, with a burst of one second's worth)
    /// with RetCode 153, as UCloud's gateway does; 0 lifts the limit.
    pub fn set_rate_limit(&self, per_second: u32) {
        self.inner().rate_limit = (per_second > 0).then(|| RateLimit {
            per_second: f64::from(per_second),
            tokens: f64::from(per_second),
            at: std::time::Instant::now(),
        });
    }

    /// Calls refused with RetCode 153 by [`Self::set_rate_limit`]'s limit.
    pub fn rate_limited(&self) -> usize {
        self.inner().rate_limited
    }

    /// Faults not yet served.
    pub fn pending_faults(&self) -> usize {
        self.inner().faults.len()
    }

    /// `PurchaseCertificate` records the order at once but answers only after `delay`.
    pub fn set_purchase_delay(&self, delay: Duration) {
        self.inner().purchase_delay = delay;
    }

    /// The account's key pair is rotated in the console: from now on only `private_key` signs.
    pub fn rotate_private_key(&self, private_key: &str) {
        *self.sim.private_key.lock().expect("simulator lock") = private_key.into();
    }

    /// Issues from now on from a CA that is not the simulator's (its chain leads to a root nobody
    /// trusts), as a vendor that mixed up accounts or a man in the middle would.
    pub fn issue_from_another_ca(&self, yes: bool) {
        self.inner().foreign_issuer = yes;
    }

    /// Adds `count` issued orders of `brand`/`product` for other domains, bought now: what else an
    /// account lists (so a lookup must read more than one page to find an order).
    pub fn add_other_orders(&self, count: usize, brand: &str, product: &str) {
        let mut inner = self.inner();
        for i in 0..count {
            let id = inner.next_id;
            inner.next_id += 1;
            inner.orders.insert(
                id,
                SimOrder {
                    id,
                    brand: brand.into(),
                    product: product.into(),
                    domains_count: 1,
                    domains: vec![format!("other-{i}.example.net")],
                    method: "DNS".into(),
                    csr: None,
                    state: state::COMPLETED.into(),
                    reject_reason: None,
                    letter: None,
                    tokens: BTreeMap::new(),
                    chain: None,
                    create_time_ms: chrono::Utc::now().timestamp_millis(),
                    submissions: 1,
                    company: None,
                    foreign_issuer: false,
                    valid_year: 1,
                    renewals: Vec::new(),
                    dns_cname: false,
                    dns_cname_label: None,
                },
            );
        }
    }

    /// Lists a new order in GetCertificateList only `lag` after it was bought, as a vendor whose
    /// listing is served from a replica does.
    pub fn set_list_lag(&self, lag: Duration) {
        self.inner().list_lag = lag;
    }

    pub fn set_download_shape(&self, shape: DownloadShape) {
        self.inner().shape = shape;
    }

    /// Where file validation connects (an ingress); the request carries the domain as Host.
    /// Unset: the domain itself on port 80.
    /// DNS validation of orders bought from now on asks for a CNAME (`AuthType: DNS_CNAME`, as
    /// Sectigo products do) rather than a TXT record (the default), and validates it as the CA
    /// would: the CNAME must exist at the name with that target.
    pub fn set_dns_cname(&self, yes: bool) {
        self.sim.inner.lock().expect("simulator lock").dns_cname = yes;
    }

    /// The `DNS_CNAME` record name of orders bought from now on is `<label>.<domain>` rather than
    /// `_<token>.<domain>`, so a test can put something at that name beforehand.
    pub fn set_dns_cname_label(&self, label: &str) {
        self.sim.inner.lock().expect("simulator lock").dns_cname_label = Some(label.to_owned());
    }

    pub fn set_http_target(&self, addr: SocketAddr) {
        self.inner().http_target = Some(addr);
    }

    pub fn orders(&self) -> Vec<SimOrder> {
        self.inner().orders.values().cloned().collect()
    }

    /// Approves the organization review of an order under review.
    pub fn approve(&self, id: i64) -> Result<(), String> {
        let mut inner = self.inner();
        let order = inner.orders.get_mut(&id).ok_or("no such order")?;
        if order.state != state::REVIEWING {
            return Err(format!("order {id} is {}, not under review", order.state));
        }
        order.state = state::DOMAIN_AUTH.into();
        Ok(())
    }

    /// Puts an order in any state, including codes the operator does not know.
    pub fn set_state(&self, id: i64, code: &str) -> Result<(), String> {
        let mut inner = self.inner();
        let order = inner.orders.get_mut(&id).ok_or("no such order")?;
        order.state = code.into();
        Ok(())
    }

    /// Rejects the organization review with a reason.
    pub fn reject(&self, id: i64, reason: &str) -> Result<(), String> {
        let mut inner = self.inner();
        let order = inner.orders.get_mut(&id).ok_or("no such order")?;
        if order.state != state::REVIEWING {
            return Err(format!("order {id} is {}, not under review", order.state));
        }
        order.state = state::REJECTED.into();
        order.reject_reason = Some(reason.into());
        Ok(())
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.sim.inner.lock().expect("simulator lock")
    }
}

/// The documented signature, as the gateway checks it.
pub fn signature(params: &Map<String, Value>, private_key: &str) -> String {
    let sorted: BTreeMap<&String, &Value> = params.iter().filter(|(k, _)| *k != "Signature").collect();
    let mut text = String::new();
    for (name, value) in sorted {
        text.push_str(name);
        text.push_str(&sign_value(value));
    }
    text.push_str(private_key);
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn sign_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) if f.fract() == 0.0 => format!("{}", f as i64),
            (_, _, Some(f)) => format!("{f}"),
            _ => n.to_string(),
        },
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

async fn file(State(sim): State<Arc<Sim>>, Path(name): Path<String>) -> Response {
    let data = sim.inner.lock().expect("simulator lock").files.get(&name).cloned();
    match data {
        Some(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn api_get(State(sim): State<Arc<Sim>>, Query(query): Query<HashMap<String, String>>) -> Response {
    let params: Map<String, Value> = query.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    handle(sim, params).await
}

async fn api_post(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(params)) => handle(sim, params).await,
        _ => answer("", 230, "the body must be a JSON object of parameters", json!({})),
    }
}

fn answer(action: &str, code: i64, message: &str, extra: Value) -> Response {
    let mut body = json!({"Action": format!("{action}Response"), "RetCode": code});
    if !message.is_empty() {
        body["Message"] = Value::String(message.into());
    }
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            body[k] = v;
        }
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn text(params: &Map<String, Value>, name: &str) -> Option<String> {
    params.get(name).map(sign_value).filter(|s| !s.is_empty())
}

fn int(params: &Map<String, Value>, name: &str) -> Option<i64> {
    text(params, name).and_then(|s| s.parse().ok())
}

/// The type of a parameter, as the pages' tables give it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    Int,
}

/// A parameter of a page's table: name, type, required.
type Param = (&'static str, Ty, bool);

/// Every action the operator calls, with the parameters its page (`reference/ussl-api/*.md`)
/// lists: name, type, and whether the page marks it required (必填 Yes). Written from the pages'
/// tables, not from a client: a call lacking a required one is answered `RetCode 230 Missing
/// params: X`, and an `int` that is not an integer `Params [X] not available`.
const PARAMS: &[(&str, &[Param])] = &[
    // purchase_certificate.md
    (
        "PurchaseCertificate",
        &[
            ("CertificateBrand", Ty::Str, true),
            ("CertificateName", Ty::Str, true),
            ("DomainsCount", Ty::Int, true),
            ("ValidYear", Ty::Str, true),
            ("CouponID", Ty::Str, false),
            ("ActivityID", Ty::Int, false),
        ],
    ),
    // complement_csr_info.md: the company and applicant are required for every order, DV included.
    (
        "ComplementCSRInfo",
        &[
            ("CertificateID", Ty::Int, true),
            ("Domains", Ty::Str, true),
            ("CSROnline", Ty::Int, true),
            ("CompanyName", Ty::Str, true),
            ("CompanyAddress", Ty::Str, true),
            ("CompanyRegion", Ty::Str, true),
            ("CompanyCity", Ty::Str, true),
            ("CompanyCountry", Ty::Str, true),
            ("CompanyDivision", Ty::Str, true),
            ("AdminName", Ty::Str, true),
            ("AdminPhone", Ty::Str, true),
            ("AdminEmail", Ty::Str, true),
            ("AdminTitle", Ty::Str, true),
            ("DVAuthMethod", Ty::Str, true),
            ("CompanyPhone", Ty::Str, false),
            ("CompanyPostalCode", Ty::Str, false),
            ("CompanyType", Ty::Str, false),
            ("CompanyCodeType", Ty::Str, false),
            ("CompanyCode", Ty::Str, false),
            ("CSR", Ty::Str, false),
            ("CSREncryptAlgo", Ty::Str, false),
            ("CSRKeyParameter", Ty::Str, false),
        ],
    ),
    // re_issue_certificate_csr_info.md (CSROnline is a string there)
    (
        "ReIssueCertificateCSRInfo",
        &[
            ("CertificateID", Ty::Int, true),
            ("CSROnline", Ty::Str, true),
            ("CSR", Ty::Str, false),
            ("CSREncryptAlgo", Ty::Str, false),
            ("CSRKeyParameter", Ty::Str, false),
            ("Domains", Ty::Str, false),
        ],
    ),
    // upload_confirm_letter.md
    ("UploadConfirmLetter", &[("CertificateID", Ty::Int, true), ("ConfirmLetter", Ty::Str, true)]),
    // download_confirm_letter_temp.md, get_dv_auth_info.md, get_certificate_detail_info.md,
    // download_certificate.md, cancel_certificate_order.md
    ("DownloadConfirmLetterTemp", &[("CertificateID", Ty::Int, true)]),
    ("GetDVAuthInfo", &[("CertificateID", Ty::Int, true)]),
    ("GetCertificateDetailInfo", &[("CertificateID", Ty::Int, true)]),
    ("DownloadCertificate", &[("CertificateID", Ty::Int, true)]),
    ("CancelCertificateOrder", &[("CertificateID", Ty::Int, true)]),
    // renew_certificate_order.md (ValidYear is an int here, a string in PurchaseCertificate)
    (
        "RenewCertificateOrder",
        &[
            ("CertificateID", Ty::Int, true),
            ("CertificateBrand", Ty::Str, true),
            ("CertificateName", Ty::Str, true),
            ("DomainsCount", Ty::Int, true),
            ("ValidYear", Ty::Int, true),
            ("CouponID", Ty::Str, false),
        ],
    ),
    // get_certificate_list.md
    (
        "GetCertificateList",
        &[
            ("Mode", Ty::Str, true),
            ("StateCode", Ty::Str, false),
            ("Brand", Ty::Str, false),
            ("Domain", Ty::Str, false),
            ("Sort", Ty::Str, false),
            ("Page", Ty::Int, false),
            ("PageSize", Ty::Int, false),
            ("CaOrganization", Ty::Str, false),
        ],
    ),
];

async fn handle(sim: Arc<Sim>, params: Map<String, Value>) -> Response {
    let Some(action) = text(&params, "Action") else {
        return answer("", 160, "Missing Action", json!({}));
    };
    let fault = {
        let mut inner = sim.inner.lock().expect("simulator lock");
        *inner.calls.entry(action.clone()).or_default() += 1;
        if inner.rate_limit.as_mut().is_some_and(|limit| !limit.take()) {
            inner.rate_limited += 1;
            Some(Fault::RetCode(153))
        } else if let Some(i) = inner.action_faults.iter().position(|(a, _)| *a == action) {
            inner.action_faults.remove(i).map(|(_, f)| f)
        } else {
            inner.faults.pop_front()
        }
    };
    match fault {
        Some(Fault::RetCode(code)) => {
            return answer(&action, code, &format!("simulated gateway error {code}"), json!({}));
        }
        Some(Fault::Garbage) => return bad_gateway(),
        Some(Fault::LoseAnswer) => {
            let _lost = carry_out(sim, action, params).await;
            return bad_gateway();
        }
        Some(Fault::SlowAnswer(delay)) => {
            let answer = carry_out(sim, action, params).await;
            tokio::time::sleep(delay).await;
            return answer;
        }
        None => {}
    }
    carry_out(sim, action, params).await
}

fn bad_gateway() -> Response {
    (StatusCode::BAD_GATEWAY, [(header::CONTENT_TYPE, "text/html")], "<html><body>502 Bad Gateway</body></html>")
        .into_response()
}

/// Checks the signature and parameters of a call and does what it asks.
async fn carry_out(sim: Arc<Sim>, action: String, params: Map<String, Value>) -> Response {
    let Some(sig) = text(&params, "Signature") else {
        return answer(&action, 170, "Missing signature", json!({}));
    };
    if text(&params, "PublicKey").as_deref() != Some(sim.public_key.as_str()) {
        return answer(&action, 172, "User not exists", json!({}));
    }
    let private_key = sim.private_key.lock().expect("simulator lock").clone();
    if sig != signature(&params, &private_key) {
        return answer(&action, 171, "Signature VerifyAC Error", json!({}));
    }
    let Some((_, documented)) = PARAMS.iter().find(|(a, _)| *a == action) else {
        return answer(&action, 161, "Action not exists", json!({}));
    };
    if let Some((missing, ..)) = documented.iter().find(|(p, _, required)| *required && text(&params, p).is_none()) {
        return answer(&action, 230, &format!("Missing params: {missing}"), json!({}));
    }
    if let Some((wrong, ..)) =
        documented.iter().find(|(p, ty, _)| *ty == Ty::Int && text(&params, p).is_some() && int(&params, p).is_none())
    {
        return answer(&action, 230, &format!("Params [{wrong}] not available"), json!({}));
    }
    if action == "PurchaseCertificate" {
        return purchase(&sim, &params).await;
    }
    if action == "GetCertificateList" {
        return list(&sim, &params);
    }
    let Some(id) = int(&params, "CertificateID") else {
        return answer(&action, 230, "Params [CertificateID] not available", json!({}));
    };
    if !sim.inner.lock().expect("simulator lock").orders.contains_key(&id) {
        return answer(&action, 8011, &format!("certificate {id} not found"), json!({}));
    }
    match action.as_str() {
        "ComplementCSRInfo" | "ReIssueCertificateCSRInfo" => complement(&sim, &action, id, &params),
        "UploadConfirmLetter" => upload_letter(&sim, id, &params),
        "DownloadConfirmLetterTemp" => letter_template(&sim, id),
        "GetDVAuthInfo" => dv_auth(&sim, id),
        "GetCertificateDetailInfo" => detail(&sim, id).await,
        "DownloadCertificate" => download(&sim, id),
        "CancelCertificateOrder" => cancel(&sim, id),
        "RenewCertificateOrder" => renew(&sim, id, &params),
        _ => answer(&action, 161, "Action not exists", json!({})),
    }
}

async fn purchase(sim: &Sim, params: &Map<String, Value>) -> Response {
    let delay = {
        let mut inner = sim.inner.lock().expect("simulator lock");
        let id = inner.next_id;
        inner.next_id += 1;
        let order = SimOrder {
            id,
            brand: text(params, "CertificateBrand").unwrap_or_default(),
            product: text(params, "CertificateName").unwrap_or_default(),
            domains_count: int(params, "DomainsCount").unwrap_or(1),
            domains: Vec::new(),
            method: String::new(),
            csr: None,
            state: state::PENDING_INFO.into(),
            reject_reason: None,
            letter: None,
            tokens: BTreeMap::new(),
            chain: None,
            create_time_ms: chrono::Utc::now().timestamp_millis(),
            submissions: 0,
            company: None,
            foreign_issuer: false,
            valid_year: int(params, "ValidYear").unwrap_or(1),
            renewals: Vec::new(),
            dns_cname: inner.dns_cname,
            dns_cname_label: inner.dns_cname_label.clone(),
        };
        inner.orders.insert(id, order);
        sim.purchases.fetch_add(1, Ordering::SeqCst);
        (inner.purchase_delay, id)
    };
    if !delay.0.is_zero() {
        tokio::time::sleep(delay.0).await;
    }
    answer("PurchaseCertificate", 0, "", json!({"CertificateID": delay.1}))
}

/// Page size of GetCertificateList when the call gives none, and the most it serves. The page
/// documents neither; these are the simulator's assumptions, small enough that clients must page.
const LIST_DEFAULT_PAGE_SIZE: usize = 10;
const LIST_MAX_PAGE_SIZE: usize = 100;

fn list(sim: &Sim, params: &Map<String, Value>) -> Response {
    let inner = sim.inner.lock().expect("simulator lock");
    let brand = text(params, "Brand");
    let listed_before = chrono::Utc::now().timestamp_millis() - inner.list_lag.as_millis() as i64;
    let mut items: Vec<&SimOrder> = inner
        .orders
        .values()
        .filter(|o| brand.as_ref().is_none_or(|b| *b == o.brand))
        .filter(|o| o.create_time_ms <= listed_before)
        .collect();
    if text(params, "Sort").as_deref() == Some("2") {
        items.reverse();
    }
    let total = items.len();
    let page = int(params, "Page").unwrap_or(1).max(1) as usize;
    let size = int(params, "PageSize").map_or(LIST_DEFAULT_PAGE_SIZE, |s| (s.max(1) as usize).min(LIST_MAX_PAGE_SIZE));
    let list: Vec<Value> = items
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .map(|o| {
            json!({
                "CertificateID": o.id, "CertificateSN": format!("ussl-{}", o.id), "Mode": "purchase",
                "Name": o.product, "Brand": o.brand, "Domains": o.domains.join(","), "DomainsCount": o.domains_count,
                "StateCode": o.state, "State": o.state, "CreateTime": o.create_time_ms,
            })
        })
        .collect();
    answer("GetCertificateList", 0, "", json!({"TotalCount": total, "CertificateList": list}))
}

fn token() -> String {
    let n: u128 = rand::random();
    format!("{n:032x}")
}

fn complement(sim: &Sim, action: &str, id: i64, params: &Map<String, Value>) -> Response {
    let mut inner = sim.inner.lock().expect("simulator lock");
    let review = inner.review;
    let order = inner.orders.get_mut(&id).expect("checked");
    let reissue = action == "ReIssueCertificateCSRInfo";
    if reissue != (order.state == state::COMPLETED) {
        let why = if reissue {
            "only an issued certificate can be re-issued"
        } else {
            "the order is issued: use ReIssueCertificateCSRInfo"
        };
        return answer(action, 8040, why, json!({}));
    }
    if order.state == state::CANCELLED {
        return answer(action, 8041, "the order is cancelled", json!({}));
    }
    if text(params, "CSROnline").as_deref() != Some("0") {
        return answer(action, 8042, "the simulator supports CSROnline=0 only", json!({}));
    }
    let Some(csr) = text(params, "CSR") else {
        return answer(action, 230, "Missing params: CSR (required when CSROnline=0)", json!({}));
    };
    let domains_text = text(params, "Domains").unwrap_or_else(|| order.domains.join(","));
    let mut domains: Vec<String> =
        domains_text.split(',').map(|d| d.trim().to_ascii_lowercase()).filter(|d| !d.is_empty()).collect();
    match csr_names(&csr) {
        Ok(names) => {
            let mut wanted = domains.clone();
            wanted.sort();
            if names != wanted {
                return answer(
                    action,
                    8043,
                    &format!("the CSR names {names:?} differ from Domains {wanted:?}"),
                    json!({}),
                );
            }
        }
        Err(e) => return answer(action, 8044, &e, json!({})),
    }
    if domains.len() as i64 > order.domains_count {
        return answer(
            action,
            8045,
            &format!("{} domains, but {} were bought", domains.len(), order.domains_count),
            json!({}),
        );
    }
    order.method = text(params, "DVAuthMethod").unwrap_or_else(|| order.method.clone()).to_ascii_uppercase();
    order.csr = Some(csr);
    order.company = text(params, "CompanyName").or(order.company.take());
    order.tokens = domains.iter().map(|d| (d.clone(), token())).collect();
    order.submissions += 1;
    order.reject_reason = None;
    order.chain = None;
    std::mem::swap(&mut order.domains, &mut domains);
    order.state = if !order.needs_review() || reissue {
        state::DOMAIN_AUTH.into()
    } else if order.letter.is_none() {
        state::PENDING_LETTER.into()
    } else if review == Review::Automatic {
        state::DOMAIN_AUTH.into()
    } else {
        state::REVIEWING.into()
    };
    answer(action, 0, "", json!({}))
}

fn is_letter(bytes: &[u8]) -> bool {
    bytes.starts_with(b"%PDF") || bytes.starts_with(&[0xFF, 0xD8, 0xFF]) || bytes.starts_with(b"\x89PNG")
}

fn upload_letter(sim: &Sim, id: i64, params: &Map<String, Value>) -> Response {
    let action = "UploadConfirmLetter";
    let encoded = text(params, "ConfirmLetter").unwrap_or_default();
    let Ok(bytes) = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded.as_bytes()) else {
        return answer(action, 8050, "ConfirmLetter is not base64", json!({}));
    };
    if !is_letter(&bytes) {
        return answer(action, 8051, "the confirmation letter must be a PDF, JPG or PNG", json!({}));
    }
    let mut inner = sim.inner.lock().expect("simulator lock");
    let review = inner.review;
    let order = inner.orders.get_mut(&id).expect("checked");
    if !order.needs_review() {
        return answer(action, 8052, "DV orders take no confirmation letter", json!({}));
    }
    order.letter = Some(bytes);
    if order.state == state::PENDING_LETTER {
        order.state = if review == Review::Automatic { state::DOMAIN_AUTH.into() } else { state::REVIEWING.into() };
    }
    answer(action, 0, "", json!({}))
}

fn letter_template(sim: &Sim, id: i64) -> Response {
    let mut inner = sim.inner.lock().expect("simulator lock");
    let name = format!("confirm-letter-{id}.docx");
    inner.files.insert(name.clone(), letter_template_bytes(id));
    answer("DownloadConfirmLetterTemp", 0, "", json!({"FileUrl": format!("{}/files/{name}", sim.base_url)}))
}

/// The template the simulator hands out: a small zip, as a .docx is.
pub fn letter_template_bytes(id: i64) -> Vec<u8> {
    use std::io::Write;
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    out.start_file("word/document.xml", options).expect("zip entry");
    let _ =
        write!(out, "<w:document>Confirmation letter for certificate order {id}: fill in, stamp, scan.</w:document>");
    out.finish().expect("zip").into_inner()
}

fn auths(order: &SimOrder) -> Vec<Value> {
    order
        .tokens
        .iter()
        .map(|(domain, token)| {
            if order.method == "FILE" {
                json!({"Domain": domain, "AuthType": "FILE", "AuthKey": "fileauth.txt", "AuthValue": token,
                       "AuthPath": "/.well-known/pki-validation/fileauth.txt"})
            } else {
                let (key, value) = order.dns_record(domain, token);
                let auth_type = if order.dns_cname { "DNS_CNAME" } else { "DNS_TXT" };
                // lowerCamel names, as the documented example shows them.
                json!({"domain": domain, "authType": auth_type, "authKey": key, "authValue": value})
            }
        })
        .collect()
}

fn dv_auth(sim: &Sim, id: i64) -> Response {
    let inner = sim.inner.lock().expect("simulator lock");
    let order = &inner.orders[&id];
    if ![state::REVIEWING, state::DOMAIN_AUTH, state::COMPLETED].contains(&order.state.as_str()) {
        return answer("GetDVAuthInfo", 8060, &format!("no validation info in state {}", order.state), json!({}));
    }
    let method = if order.method == "FILE" { "FILE" } else { "DNS" };
    answer("GetDVAuthInfo", 0, "", json!({"AuthMethod": method, "Auths": auths(order)}))
}

async fn detail(sim: &Sim, id: i64) -> Response {
    let (order, http_target) = {
        let inner = sim.inner.lock().expect("simulator lock");
        (inner.orders[&id].clone(), inner.http_target)
    };
    if order.state == state::DOMAIN_AUTH {
        let mut all = true;
        for (domain, token) in &order.tokens {
            let base = domain.trim_start_matches("*.");
            let ok = if order.method == "FILE" {
                let url = format!("http://{base}/.well-known/pki-validation/fileauth.txt");
                validate::http_file(&url, http_target, token).await.is_ok()
            } else {
                let (name, value) = order.dns_record(domain, token);
                if order.dns_cname {
                    validate::dns_cname(sim.dns, &name, &value).await.is_ok()
                } else {
                    validate::dns_txt(sim.dns, &name, &value).await.is_ok()
                }
            };
            all &= ok;
        }
        if all {
            let serial = id as u64 * 1000 + u64::from(order.submissions);
            let foreign = sim.inner.lock().expect("simulator lock").foreign_issuer;
            let ca = if foreign { &sim.foreign_ca } else { &sim.ca };
            let issued = order.csr.as_deref().ok_or_else(|| "no CSR".to_string()).and_then(|csr| ca.issue(csr, serial));
            let mut inner = sim.inner.lock().expect("simulator lock");
            // Issued only if nothing was resubmitted meanwhile.
            if let Some(o) = inner.orders.get_mut(&id)
                && o.state == state::DOMAIN_AUTH
                && o.submissions == order.submissions
            {
                match issued {
                    Ok(leaf) => {
                        o.chain = Some(leaf);
                        o.foreign_issuer = foreign;
                        o.state = state::COMPLETED.into();
                    }
                    Err(e) => {
                        o.state = state::REJECTED.into();
                        o.reject_reason = Some(format!("the CA could not issue: {e}"));
                    }
                }
            }
        }
    }
    let inner = sim.inner.lock().expect("simulator lock");
    let o = &inner.orders[&id];
    let mut info = json!({
        "CertificateID": o.id, "Type": "purchase", "CertificateType": if o.needs_review() { "OV" } else { "DV" },
        "CaOrganization": "USSL simulator", "Name": o.product, "Brand": o.brand, "Domains": o.domains.join(","),
        "DomainsCount": o.domains_count, "Mode": "purchase", "CSROnline": 0, "State": o.state, "StateCode": o.state,
    });
    if let Some(reason) = &o.reject_reason {
        info["RejectReason"] = Value::String(reason.clone());
    }
    info["ValidityPeriod"] = json!(o.valid_year);
    // OrderInfo: the purchase, then each term renewal, with when it was paid.
    let paid = std::iter::once(o.create_time_ms / 1000).chain(o.renewals.iter().copied());
    let orders: Vec<Value> = paid
        .map(|t| json!({"ResourceID": format!("ussl-{}", o.id), "DomainsCount": o.domains_count, "PurchaseTime": t}))
        .collect();
    let mut extra = json!({"CertificateInfo": info, "OrderInfo": orders});
    if let Some(company) = &o.company {
        extra["CompanyInfo"] = json!({"Name": company});
    }
    answer("GetCertificateDetailInfo", 0, "", extra)
}

fn download(sim: &Sim, id: i64) -> Response {
    let mut inner = sim.inner.lock().expect("simulator lock");
    let shape = inner.shape;
    let order = inner.orders[&id].clone();
    let Some(leaf) = order.chain.filter(|_| order.state == state::COMPLETED) else {
        return answer(
            "DownloadCertificate",
            8070,
            &format!("the certificate is not issued (state {})", order.state),
            json!({}),
        );
    };
    let ca = if order.foreign_issuer { &sim.foreign_ca } else { &sim.ca }.cert_pem().to_string();
    match shape {
        DownloadShape::Inline => answer(
            "DownloadCertificate",
            0,
            "",
            json!({"Certificate": {"FileData": leaf, "FileName": "Certificate.pem"}, "CertCA": {"FileData": ca, "FileName": "CertificateCA.pem"}, "CsrOnline": 0}),
        ),
        DownloadShape::Zip => {
            use std::io::Write;
            // Deflate-compressed, as zip tools and vendors write them.
            let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
            for (name, data) in [
                ("Apache/certificate.crt".to_string(), leaf.clone()),
                ("Apache/root_bundle.crt".to_string(), ca.clone()),
                ("Nginx/certificate.pem".to_string(), format!("{}\n{}", leaf.trim(), ca)),
                ("readme.txt".to_string(), "USSL simulator".to_string()),
            ] {
                out.start_file(name, options).expect("zip entry");
                out.write_all(data.as_bytes()).expect("zip write");
            }
            let bytes = out.finish().expect("zip").into_inner();
            let name = format!("cert-{id}-{}.zip", token());
            inner.files.insert(name.clone(), bytes);
            answer("DownloadCertificate", 0, "", json!({"CertificateUrl": format!("{}/files/{name}", sim.base_url)}))
        }
    }
}

/// Renews the order's term: only an order that was issued, of the product it was bought as.
fn renew(sim: &Sim, id: i64, params: &Map<String, Value>) -> Response {
    let mut inner = sim.inner.lock().expect("simulator lock");
    let order = inner.orders.get_mut(&id).expect("checked");
    if order.chain.is_none() {
        return answer("RenewCertificateOrder", 8090, "only an issued certificate can be renewed", json!({}));
    }
    let same = |name: &str, have: &str| text(params, name).as_deref() == Some(have);
    if !same("CertificateBrand", &order.brand) || !same("CertificateName", &order.product) {
        return answer("RenewCertificateOrder", 8091, "the brand and name do not match the certificate", json!({}));
    }
    if int(params, "DomainsCount") != Some(order.domains_count) {
        return answer("RenewCertificateOrder", 8092, "DomainsCount does not match the certificate", json!({}));
    }
    order.renewals.push(chrono::Utc::now().timestamp());
    answer("RenewCertificateOrder", 0, "", json!({}))
}

fn cancel(sim: &Sim, id: i64) -> Response {
    let mut inner = sim.inner.lock().expect("simulator lock");
    let order = inner.orders.get_mut(&id).expect("checked");
    if order.state == state::COMPLETED {
        return answer("CancelCertificateOrder", 8080, "an issued certificate cannot be cancelled", json!({}));
    }
    order.state = state::CANCELLED.into();
    answer("CancelCertificateOrder", 0, "", json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    const PUBLIC: &str = "ucloudsomeone@example.com1296235120854146120";
    const PRIVATE: &str = "46f09bb9fab4f12dfc160dae12273d5332b5debe";

    #[test]
    fn checks_the_documented_signature() {
        let params = json!({"Action": "DescribeUHostInstance", "Region": "cn-bj2", "Limit": 10, "PublicKey": PUBLIC});
        assert_eq!(signature(params.as_object().unwrap(), PRIVATE), "cba5cf5ec4d4233d206b1b54951e3787350a642f");
    }

    async fn call(sim: &UsslSim, mut params: Value, sign_with: Option<&str>) -> (u16, Value) {
        if let Some(key) = sign_with {
            let sig = signature(params.as_object().unwrap(), key);
            params["Signature"] = Value::String(sig);
        }
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let request = http::Request::post(format!("{}/", sim.endpoint()))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(params.to_string())))
            .unwrap();
        let response = client.request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn refuses_calls_over_the_rate_limit_with_153() {
        let sim = UsslSim::start(PUBLIC, PRIVATE, "127.0.0.1:9".parse().unwrap()).await;
        let list = json!({"Action": "GetCertificateList", "PublicKey": PUBLIC, "Mode": "trust"});
        sim.set_rate_limit(1);
        let mut codes = Vec::new();
        for _ in 0..5 {
            codes.push(call(&sim, list.clone(), Some(PRIVATE)).await.1["RetCode"].clone());
        }
        assert_eq!(codes[0], 0, "the first call of a second is within the limit");
        assert!(codes.contains(&json!(153)), "five calls at once exceed one a second: {codes:?}");
        assert_eq!(sim.rate_limited(), codes.iter().filter(|c| **c == 153).count());
        assert_eq!(sim.total_calls(), 5);
        sim.set_rate_limit(0);
        assert_eq!(call(&sim, list, Some(PRIVATE)).await.1["RetCode"], 0, "no limit");
    }

    #[tokio::test]
    async fn refuses_bad_signatures_missing_parameters_and_unknown_actions_and_serves_faults() {
        let sim = UsslSim::start(PUBLIC, PRIVATE, "127.0.0.1:9".parse().unwrap()).await;
        let purchase = json!({"Action": "PurchaseCertificate", "PublicKey": PUBLIC, "CertificateBrand": "TrustAsia",
                              "CertificateName": "TrustAsiaDVG5", "DomainsCount": 1, "ValidYear": "1"});
        let (_, a) = call(&sim, purchase.clone(), Some("not the key")).await;
        assert_eq!(a["RetCode"], 171);
        let (_, a) = call(&sim, purchase.clone(), None).await;
        assert_eq!(a["RetCode"], 170);
        let mut other_user = purchase.clone();
        other_user["PublicKey"] = json!("someone else");
        assert_eq!(call(&sim, other_user, Some(PRIVATE)).await.1["RetCode"], 172);
        let mut missing = purchase.clone();
        missing.as_object_mut().unwrap().remove("ValidYear");
        let (_, a) = call(&sim, missing, Some(PRIVATE)).await;
        assert_eq!((a["RetCode"].clone(), a["Message"].clone()), (json!(230), json!("Missing params: ValidYear")));
        let (_, a) = call(&sim, json!({"Action": "DescribeUHostInstance", "PublicKey": PUBLIC}), Some(PRIVATE)).await;
        assert_eq!(a["RetCode"], 161);
        assert_eq!(sim.purchases(), 0);

        sim.fail_next(1, Fault::RetCode(153));
        sim.fail_next(1, Fault::Garbage);
        assert_eq!(call(&sim, purchase.clone(), Some(PRIVATE)).await.1["RetCode"], 153);
        assert_eq!(call(&sim, purchase.clone(), Some(PRIVATE)).await, (502, Value::Null));
        let (_, a) = call(&sim, purchase.clone(), Some(PRIVATE)).await;
        assert_eq!(a["RetCode"], 0);
        assert_eq!(a["Action"], "PurchaseCertificateResponse");
        let id = a["CertificateID"].as_i64().unwrap();
        assert_eq!(sim.purchases(), 1);
        assert_eq!(sim.calls("PurchaseCertificate"), 7);

        // complement_csr_info.md requires the company and applicant for every order, DV included.
        let info = json!({"Action": "ComplementCSRInfo", "PublicKey": PUBLIC, "CertificateID": id, "Domains": "a.example.com",
                          "CSROnline": 0, "DVAuthMethod": "DNS"});
        let (_, a) = call(&sim, info.clone(), Some(PRIVATE)).await;
        assert_eq!((a["RetCode"].clone(), a["Message"].clone()), (json!(230), json!("Missing params: CompanyName")));
        let mut info = info;
        for (k, v) in [
            ("CompanyName", "Example Ltd"),
            ("CompanyAddress", "1 Example Road"),
            ("CompanyRegion", "Shanghai"),
            ("CompanyCity", "Shanghai"),
            ("CompanyCountry", "CN"),
            ("CompanyDivision", "IT"),
            ("AdminName", "Li Lei"),
            ("AdminPhone", "+86 138 0000 0000"),
            ("AdminEmail", "li.lei@example.com"),
        ] {
            info[k] = json!(v);
        }
        let (_, a) = call(&sim, info.clone(), Some(PRIVATE)).await;
        assert_eq!((a["RetCode"].clone(), a["Message"].clone()), (json!(230), json!("Missing params: AdminTitle")));
        info["AdminTitle"] = json!("IT Manager");
        // An int that is not one is refused.
        let mut not_int = info.clone();
        not_int["CSROnline"] = json!("no");
        let (_, a) = call(&sim, not_int, Some(PRIVATE)).await;
        assert_eq!(
            (a["RetCode"].clone(), a["Message"].clone()),
            (json!(230), json!("Params [CSROnline] not available"))
        );
        // Info without the CSR that CSROnline=0 requires is refused; an unknown id too.
        assert_eq!(call(&sim, info, Some(PRIVATE)).await.1["RetCode"], 230);
        let detail = json!({"Action": "GetCertificateDetailInfo", "PublicKey": PUBLIC, "CertificateID": 1});
        assert_eq!(call(&sim, detail, Some(PRIVATE)).await.1["RetCode"], 8011);
        let detail = json!({"Action": "GetCertificateDetailInfo", "PublicKey": PUBLIC, "CertificateID": id});
        assert_eq!(call(&sim, detail, Some(PRIVATE)).await.1["CertificateInfo"]["StateCode"], "PENDING_INFO");
    }
}
