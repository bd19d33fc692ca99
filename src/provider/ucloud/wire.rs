//! The answers of the USSL API, read liberally: field names in any case (`AuthKey`, `authKey`),
//! numbers as numbers or strings, objects where a list was expected and the reverse. The
//! documented examples are partly machine-generated (random strings, wrong types); the field
//! tables are trusted over them, and a field of the wrong shape reads as missing, never as an error.

use serde_json::Value;

/// The field `name` of an object, matched without regard to case.
pub fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    let object = value.as_object()?;
    object.get(name).or_else(|| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

/// The first of `names` present, not null.
pub fn any_field<'a>(value: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| field(value, n).filter(|v| !v.is_null()))
}

/// A string field; numbers and bools are accepted as their text.
pub fn string(value: &Value, name: &str) -> Option<String> {
    as_string(field(value, name)?)
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// An integer field; strings holding an integer are accepted.
pub fn int(value: &Value, name: &str) -> Option<i64> {
    as_int(field(value, name)?)
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A list of objects; a lone object counts as a list of one, anything else as empty.
fn objects(value: Option<&Value>) -> Vec<&Value> {
    match value {
        Some(Value::Array(items)) => items.iter().filter(|i| i.is_object()).collect(),
        Some(v @ Value::Object(_)) => vec![v],
        _ => Vec::new(),
    }
}

/// `PurchaseCertificate`: the id of the order bought.
pub fn purchased_id(answer: &Value) -> Option<String> {
    any_field(answer, &["CertificateID", "CertificateId", "ID"]).and_then(as_int).map(|id| id.to_string())
}

/// One entry of `GetCertificateList`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListedCertificate {
    pub id: Option<String>,
    pub name: String,
    pub brand: String,
    pub domains: String,
    pub state_code: String,
    pub state: String,
    pub mode: String,
    /// Seconds since the epoch (the API mixes seconds and milliseconds; both are read).
    pub create_time: Option<i64>,
}

pub fn certificate_list(answer: &Value) -> Vec<ListedCertificate> {
    objects(field(answer, "CertificateList"))
        .into_iter()
        .map(|c| ListedCertificate {
            id: any_field(c, &["CertificateID", "CertificateId", "ID"]).and_then(as_int).map(|i| i.to_string()),
            name: string(c, "Name").unwrap_or_default(),
            brand: string(c, "Brand").unwrap_or_default(),
            domains: string(c, "Domains").unwrap_or_default(),
            state_code: string(c, "StateCode").unwrap_or_default(),
            state: string(c, "State").unwrap_or_default(),
            mode: string(c, "Mode").unwrap_or_default(),
            create_time: int(c, "CreateTime").map(seconds),
        })
        .collect()
}

/// Timestamps above year 5000 in seconds are milliseconds.
pub fn seconds(t: i64) -> i64 {
    if t > 100_000_000_000 { t / 1000 } else { t }
}

/// `GetCertificateDetailInfo`: what the order's state is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Detail {
    pub state_code: Option<String>,
    pub state: Option<String>,
    pub name: Option<String>,
    pub domains: Option<String>,
    /// Why the CA turned the order down, when the answer says.
    pub reason: Option<String>,
}

pub fn detail(answer: &Value) -> Detail {
    let info = objects(field(answer, "CertificateInfo")).into_iter().next();
    let Some(info) = info else {
        return Detail::default();
    };
    let text = |names: &[&str]| any_field(info, names).and_then(as_string).filter(|s| !s.is_empty());
    Detail {
        state_code: text(&["StateCode"]),
        state: text(&["State"]),
        name: text(&["Name"]),
        domains: text(&["Domains"]),
        reason: text(&["RejectReason", "RejectedReason", "AuditReason", "Reason", "Remark"]),
    }
}

/// `GetCertificateDetailInfo`'s `OrderInfo`: when each purchase and term renewal of the order was
/// paid (seconds), oldest first.
pub fn paid_times(answer: &Value) -> Vec<i64> {
    let mut times: Vec<i64> =
        objects(field(answer, "OrderInfo")).into_iter().filter_map(|o| int(o, "PurchaseTime").map(seconds)).collect();
    times.sort_unstable();
    times
}

/// One validation of `GetDVAuthInfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Auth {
    pub domain: String,
    pub auth_type: String,
    pub key: String,
    pub value: String,
    pub path: String,
}

/// `GetDVAuthInfo`: the method (`DNS` or `FILE`) and one entry per domain.
pub fn dv_auth(answer: &Value) -> (String, Vec<Auth>) {
    let method = string(answer, "AuthMethod").unwrap_or_default();
    let auths = objects(field(answer, "Auths"))
        .into_iter()
        .map(|a| Auth {
            domain: string(a, "Domain").unwrap_or_default(),
            auth_type: any_field(a, &["AuthType", "AuthMethod"]).and_then(as_string).unwrap_or_default(),
            key: any_field(a, &["AuthKey", "AuthFile"]).and_then(as_string).unwrap_or_default(),
            value: any_field(a, &["AuthValue", "AuthRecord"]).and_then(as_string).unwrap_or_default(),
            path: string(a, "AuthPath").unwrap_or_default(),
        })
        .collect();
    (method, auths)
}

/// `DownloadCertificate`: the inline PEM files of the newer answer, or the older zip's URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Download {
    Inline { certificate: String, ca: String },
    Url(String),
    Nothing,
}

pub fn download(answer: &Value) -> Download {
    let file = |name: &str| {
        field(answer, name).and_then(|f| match f {
            Value::String(s) => Some(s.clone()),
            other => any_field(other, &["FileData", "Data", "Content"]).and_then(as_string),
        })
    };
    let certificate = file("Certificate").filter(|c| c.contains("-----BEGIN CERTIFICATE-----"));
    if let Some(certificate) = certificate {
        return Download::Inline { certificate, ca: file("CertCA").unwrap_or_default() };
    }
    match string(answer, "CertificateUrl").filter(|u| u.starts_with("http://") || u.starts_with("https://")) {
        Some(url) => Download::Url(url),
        None => Download::Nothing,
    }
}

/// `DownloadConfirmLetterTemp`: where the template is.
pub fn letter_template_url(answer: &Value) -> Option<String> {
    any_field(answer, &["FileUrl", "FileURL", "Url"]).and_then(as_string).filter(|u| u.starts_with("http"))
}
