//! The USSL API client: the documented SHA1 signature, one POST per action, gateway errors by
//! kind, a rate limiter shared by every order of the provider, and logging that never shows the
//! signature or the keys.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::super::ProviderError;

/// How long one call may take before it counts as a transient failure.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer body read (downloads are small: a chain, a zip, a letter template).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// An API key pair. `Debug` never shows the private key.
#[derive(Clone)]
pub struct Credentials {
    pub public_key: String,
    pub private_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("public_key", &"<redacted>").field("private_key", &"<redacted>").finish()
    }
}

/// The string a parameter value contributes to the signed text: strings as they are, integers in
/// decimal, floats without a zero fraction and never in scientific notation, bools as true/false.
pub fn sign_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                let f = n.as_f64().unwrap_or_default();
                if f.fract() == 0.0 && f.abs() < 1e18 { format!("{}", f as i64) } else { format!("{f}") }
            }
        }
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The documented signature: parameters sorted by name, each name followed by its value, the
/// private key appended, SHA1 in lowercase hex. `Signature` itself is never signed.
pub fn signature(params: &BTreeMap<String, Value>, private_key: &str) -> String {
    let mut text = String::new();
    for (name, value) in params {
        if name == "Signature" {
            continue;
        }
        text.push_str(name);
        text.push_str(&sign_value(value));
    }
    text.push_str(private_key);
    hex::encode(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes()).as_ref())
}

/// Reads whose business errors are retried, not fatal. (`GetDVAuthInfo` and
/// `DownloadConfirmLetterTemp` are left out: their refusal means "nothing to offer yet", which
/// the provider handles.)
pub const READ_ONLY_ACTIONS: &[&str] = &["GetCertificateDetailInfo", "GetCertificateList", "DownloadCertificate"];

/// RetCodes that refuse the account rather than the request: credentials (170, 171, 172), project
/// (292), IP allow-list (294), IAM permission (299). Fixed outside the order.
pub const ACCOUNT_CODES: &[i64] = &[170, 171, 172, 292, 294, 299];

/// What a failed call means for the order, by the gateway's `RetCode`.
pub fn classify(action: &str, code: i64, message: &str, secret: &str) -> ProviderError {
    let error = classify_code(action, code, message, secret);
    // An order already bought must not end because the account was refused while it was only
    // being asked about: a person fixes the Secret or the permission, and the order carries on.
    if ACCOUNT_CODES.contains(&code) && READ_ONLY_ACTIONS.contains(&action) {
        return ProviderError::retryable(format!(
            "{}; asking again later (the order carries on once the account is fixed)",
            error.message
        ));
    }
    error
}

fn classify_code(action: &str, code: i64, message: &str, secret: &str) -> ProviderError {
    let vendor = if message.is_empty() { String::new() } else { format!(": {message}") };
    match code {
        // The gateway refused the call before it reached the service: nothing was done.
        153 => ProviderError::retryable(format!(
            "UCloud is rate limiting this account (RetCode 153) on {action}{vendor}; retrying"
        )),
        // The gateway gave up on the call, which the service may have carried out.
        110 | 130 | 150 => {
            let what = match code {
                110 => "timed out",
                130 => "had a gateway or authentication service failure",
                _ => "is temporarily unavailable",
            };
            ProviderError::outcome_unknown(format!("UCloud {what} (RetCode {code}) on {action}{vendor}; retrying"))
        }
        170 | 171 => ProviderError::permanent(format!(
            "UCloud refused the credentials (RetCode {code}): check PublicKey/PrivateKey in Secret {secret}"
        )),
        172 => ProviderError::permanent(format!(
            "UCloud does not know the user of this PublicKey (RetCode 172): check PublicKey in Secret {secret}"
        )),
        292 => ProviderError::permanent(format!(
            "UCloud says the project does not exist (RetCode 292): check spec.ucloud.projectId of the provider{vendor}"
        )),
        294 => ProviderError::permanent(format!(
            "UCloud refused this client's IP address (RetCode 294): add it to the account's API IP allow-list{vendor}"
        )),
        299 => ProviderError::permanent(format!(
            "UCloud denied {action} (RetCode 299, IAM): give the key of Secret {secret} permission for the USSL (SSL certificate) API{vendor}"
        )),
        _ => {
            let text = format!(
                "UCloud refused {action} (RetCode {code}): {}",
                if message.is_empty() { "no message" } else { message }
            );
            // A refused read changes nothing and an order lives for days: ask again later. A
            // refused change (buy, send info, upload) needs a person.
            if READ_ONLY_ACTIONS.contains(&action) {
                ProviderError::retryable(format!("{text}; asking again later"))
            } else {
                ProviderError::permanent(text)
            }
        }
    }
}

/// Spaces calls out so that all the orders of one provider together stay under a rate.
pub struct RateLimiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    pub fn per_second(rate: u32) -> RateLimiter {
        let rate = rate.max(1);
        RateLimiter { interval: Duration::from_secs(1) / rate, next: Mutex::new(Instant::now()) }
    }

    pub async fn acquire(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// One client per provider; clones share the connection pool and the rate limiter.
#[derive(Clone)]
pub struct Client {
    endpoint: String,
    project_id: Option<String>,
    /// Replaced when the Secret is read again after UCloud refused them.
    credentials: Arc<std::sync::RwLock<Credentials>>,
    /// UCloud's last refusal of the credentials or the account's permissions (RetCode 170, 171,
    /// 172, 292, 294, 299), until a call succeeds again.
    refused: Arc<std::sync::Mutex<Option<String>>>,
    /// `namespace/name` of the credentials Secret, for messages.
    secret: String,
    http: HttpClient<Https, Full<Bytes>>,
    limiter: Arc<RateLimiter>,
}

impl Client {
    pub fn new(
        endpoint: &str,
        project_id: Option<String>,
        credentials: Credentials,
        secret: String,
        requests_per_second: u32,
    ) -> Result<Client, String> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("cannot load the system's CA certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let http = HttpClient::builder(TokioExecutor::new()).build(connector);
        let endpoint = endpoint.trim_end_matches('/').to_string();
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(format!("spec.ucloud.endpoint {endpoint:?} must start with https:// or http://"));
        }
        Ok(Client {
            endpoint,
            project_id: project_id.filter(|p| !p.is_empty()),
            credentials: Arc::new(std::sync::RwLock::new(credentials)),
            refused: Arc::default(),
            secret,
            http,
            limiter: Arc::new(RateLimiter::per_second(requests_per_second)),
        })
    }

    /// Why UCloud last refused the credentials or permissions, while no call succeeded since.
    pub fn refused(&self) -> Option<String> {
        self.refused.lock().expect("refusal lock").clone()
    }

    /// The key pair as read again from the Secret (after a refusal): the next calls use it.
    pub fn replace_credentials(&self, credentials: Credentials) {
        *self.credentials.write().expect("credentials lock") = credentials;
    }

    /// Calls `action` with `params`; `Ok` holds the answer of a `RetCode` 0.
    pub async fn call(&self, action: &str, params: BTreeMap<String, Value>) -> Result<Value, ProviderError> {
        let credentials = self.credentials.read().expect("credentials lock").clone();
        let mut params = params;
        params.insert("Action".into(), Value::String(action.into()));
        params.insert("PublicKey".into(), Value::String(credentials.public_key.clone()));
        if let Some(project) = &self.project_id {
            params.entry("ProjectId".into()).or_insert_with(|| Value::String(project.clone()));
        }
        let sig = signature(&params, &credentials.private_key);
        tracing::debug!(action, params = %redacted(&params), "UCloud request");
        params.insert("Signature".into(), Value::String(sig));
        let body = serde_json::to_vec(&params).expect("JSON of a map of values");

        self.limiter.acquire().await;
        let request = http::Request::post(format!("{}/", self.endpoint))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, concat!("certorder/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ProviderError::permanent(format!("cannot build a request to {}: {e}", self.endpoint)))?;
        let (status, bytes) = self.send(request, action).await?;
        let answer: Value = match serde_json::from_slice(&bytes) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                let preview: String = String::from_utf8_lossy(&bytes).chars().take(120).collect();
                tracing::debug!(action, %status, "UCloud answered something other than JSON");
                return Err(ProviderError::outcome_unknown(format!(
                    "UCloud answered {action} with HTTP {status} and a body that is not a JSON object ({preview:?}); retrying"
                )));
            }
        };
        let code = super::wire::int(&answer, "RetCode").unwrap_or(-1);
        let message = super::wire::string(&answer, "Message").unwrap_or_default();
        tracing::debug!(action, ret_code = code, %status, "UCloud answer");
        if code == 0 {
            *self.refused.lock().expect("refusal lock") = None;
            return Ok(answer);
        }
        if code == -1 {
            return Err(ProviderError::outcome_unknown(format!(
                "UCloud answered {action} with HTTP {status} and no RetCode; retrying"
            )));
        }
        let error = classify(action, code, &message, &self.secret);
        if ACCOUNT_CODES.contains(&code) {
            *self.refused.lock().expect("refusal lock") = Some(error.message.clone());
        }
        Err(error)
    }

    /// Fetches a file the API pointed at (a certificate zip, a letter template): over https, or
    /// from the configured endpoint itself (a plain-http endpoint inside UCloud's network).
    pub async fn fetch(&self, url: &str, what: &str) -> Result<Vec<u8>, ProviderError> {
        if !download_allowed(url, &self.endpoint) {
            return Err(ProviderError::retryable(format!(
                "UCloud pointed at {url:?} for the {what}: files are fetched over https only (or from the API endpoint {}); asking again later",
                self.endpoint
            )));
        }
        let request = http::Request::get(url)
            .header(http::header::USER_AGENT, concat!("certorder/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::new()))
            .map_err(|e| {
                ProviderError::permanent(format!("UCloud gave an unusable URL for the {what} ({url:?}): {e}"))
            })?;
        let (status, bytes) = self.send(request, what).await?;
        if !status.is_success() {
            return Err(ProviderError::retryable(format!(
                "downloading the {what} from UCloud answered HTTP {status}; retrying"
            )));
        }
        Ok(bytes)
    }

    async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
        what: &str,
    ) -> Result<(http::StatusCode, Vec<u8>), ProviderError> {
        // (whether the request can have been sent, what went wrong)
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| (!e.is_connect(), format!("{e}")))?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_BODY_BYTES);
            let bytes = body.collect().await.map_err(|e| (true, format!("reading the answer: {e}")))?.to_bytes();
            Ok::<_, (bool, String)>((status, bytes.to_vec()))
        };
        match tokio::time::timeout(CALL_TIMEOUT, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err((false, e))) => Err(ProviderError::retryable(format!(
                "cannot reach UCloud at {} ({what}): {e}; retrying",
                self.endpoint
            ))),
            Ok(Err((true, e))) => Err(ProviderError::outcome_unknown(format!(
                "lost the connection to UCloud at {} ({what}): {e}; retrying",
                self.endpoint
            ))),
            Err(_) => Err(ProviderError::outcome_unknown(format!(
                "UCloud did not answer {what} within {}s; retrying",
                CALL_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// The parameters as logged: keys, signature and large values left out.
pub fn redacted(params: &BTreeMap<String, Value>) -> String {
    let parts: Vec<String> = params
        .iter()
        .map(|(name, value)| {
            let shown = match name.as_str() {
                "Signature" | "PublicKey" | "PrivateKey" => "<redacted>".to_string(),
                "CSR" | "ConfirmLetter" => format!("<{} bytes>", sign_value(value).len()),
                _ => {
                    let v = sign_value(value);
                    if v.len() > 200 { format!("<{} bytes>", v.len()) } else { v }
                }
            };
            format!("{name}={shown}")
        })
        .collect();
    parts.join(" ")
}

/// Whether a URL the API answered with may be fetched: https, or the endpoint's own origin.
pub fn download_allowed(url: &str, endpoint: &str) -> bool {
    let origin = |u: &str| -> Option<(String, String)> {
        let uri: http::Uri = u.parse().ok()?;
        Some((uri.scheme_str()?.to_ascii_lowercase(), uri.authority()?.as_str().to_ascii_lowercase()))
    };
    match (origin(url), origin(endpoint)) {
        (Some((scheme, _)), _) if scheme == "https" => true,
        (Some(file), Some(api)) => file == api,
        _ => false,
    }
}
