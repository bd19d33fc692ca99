//! Service account tokens and `authentication.k8s.io`: the `serviceaccounts/token` subresource
//! (TokenRequest) issues ES256 JWTs with kube-apiserver's claims, TokenReview checks them (signature,
//! expiry, audience, the service account still existing with the same uid), and SelfSubjectReview
//! tells the caller who it is (the testbed's one user).
use std::sync::OnceLock;

use base64::Engine;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult, Target};
use super::ops;
use super::store::{ObjKey, Store};

/// The issuer and default audience of tokens, kube-apiserver's defaults.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The user the testbed's bearer token authenticates as.
pub const ADMIN_USER: &str = "testbed-admin";

fn key() -> &'static EcdsaKeyPair {
    static KEY: OnceLock<EcdsaKeyPair> = OnceLock::new();
    KEY.get_or_init(|| {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).expect("key")
    })
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn sign(claims: &Value) -> String {
    let header = json!({"alg": "ES256", "kid": "testbed"});
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let rng = ring::rand::SystemRandom::new();
    let sig = key().sign(&rng, input.as_bytes()).expect("sign");
    format!("{input}.{}", b64(sig.as_ref()))
}

/// The claims of a token this server signed, if the signature holds.
fn verify(token: &str) -> Option<Value> {
    let (input, sig) = token.rsplit_once('.')?;
    let (_, claims) = input.split_once('.')?;
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig).ok()?;
    let public = signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, key().public_key().as_ref());
    public.verify(input.as_bytes(), &sig).ok()?;
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).ok()?).ok()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect()
}

/// `POST .../serviceaccounts/{name}/token`: a TokenRequest answered with a signed token.
pub fn token_request(store: &Store, namespace: &str, name: &str, body: &Value) -> ApiResult<Value> {
    let key = ObjKey { storage: "serviceaccounts".into(), namespace: namespace.into(), name: name.into() };
    let sa =
        store.get(&key).ok_or_else(|| ApiError::not_found(Target { group: "", resource: "serviceaccounts", name }))?;
    let spec = &body["spec"];
    let expiration = spec["expirationSeconds"].as_i64().unwrap_or(3600);
    if expiration < 600 {
        return Err(ApiError::invalid(
            "TokenRequest",
            "authentication.k8s.io",
            name,
            &[super::schema::FieldError {
                reason: "FieldValueInvalid".into(),
                field: "spec.expirationSeconds".into(),
                message: format!("Invalid value: {expiration}: may not specify a duration less than 10 minutes"),
            }],
        ));
    }
    let mut audiences = strings(&spec["audiences"]);
    if audiences.is_empty() {
        audiences = vec![ISSUER.to_string()];
    }
    let now = chrono::Utc::now();
    let exp = now + chrono::Duration::seconds(expiration);
    let claims = json!({
        "aud": audiences,
        "exp": exp.timestamp(),
        "iat": now.timestamp(),
        "iss": ISSUER,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": sa["metadata"]["uid"]},
        },
        "nbf": now.timestamp(),
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
    });
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": ops::now()},
        "spec": {"audiences": audiences, "expirationSeconds": expiration, "boundObjectRef": spec["boundObjectRef"]},
        "status": {
            "token": sign(&claims),
            "expirationTimestamp": exp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        },
    }))
}

/// What a TokenReview finds out about a token: `Ok((user, audiences))` or the error text.
fn review(store: &Store, admin_token: &str, token: &str, wanted: &[String]) -> Result<(Value, Vec<String>), String> {
    if token == admin_token {
        let auds = if wanted.is_empty() { vec![ISSUER.to_string()] } else { wanted.to_vec() };
        return Ok((json!({"username": ADMIN_USER, "groups": ["system:masters", "system:authenticated"]}), auds));
    }
    let invalid = || "[invalid bearer token, token lookup failed]".to_string();
    let claims = verify(token).ok_or_else(invalid)?;
    if claims["exp"].as_i64().is_none_or(|e| e < chrono::Utc::now().timestamp()) {
        return Err("[invalid bearer token, service account token has expired]".into());
    }
    let token_auds = strings(&claims["aud"]);
    let wanted = if wanted.is_empty() { vec![ISSUER.to_string()] } else { wanted.to_vec() };
    let auds: Vec<String> = wanted.into_iter().filter(|a| token_auds.contains(a)).collect();
    if auds.is_empty() {
        return Err("[invalid bearer token, token audiences don't match]".into());
    }
    let k = &claims["kubernetes.io"];
    let (ns, name) =
        (k["namespace"].as_str().unwrap_or_default(), k["serviceaccount"]["name"].as_str().unwrap_or_default());
    let key = ObjKey { storage: "serviceaccounts".into(), namespace: ns.into(), name: name.into() };
    let sa = store.get(&key).ok_or_else(|| format!("[invalid bearer token, serviceaccounts \"{name}\" not found]"))?;
    let uid = sa["metadata"]["uid"].clone();
    if uid != k["serviceaccount"]["uid"] {
        return Err(format!(
            "[invalid bearer token, service account UID ({}) does not match claim ({})]",
            uid.as_str().unwrap_or_default(),
            k["serviceaccount"]["uid"].as_str().unwrap_or_default()
        ));
    }
    let user = json!({
        "username": format!("system:serviceaccount:{ns}:{name}"),
        "uid": uid,
        "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"), "system:authenticated"],
        "extra": {"authentication.kubernetes.io/credential-id": [format!("JTI={}", claims["jti"].as_str().unwrap_or_default())]},
    });
    Ok((user, auds))
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`.
pub fn token_review(store: &Store, admin_token: &str, body: &Value) -> ApiResult<Value> {
    let token = body["spec"]["token"].as_str().unwrap_or_default();
    if token.is_empty() {
        return Err(ApiError::bad_request("token is required for TokenReview"));
    }
    let status = match review(store, admin_token, token, &strings(&body["spec"]["audiences"])) {
        Ok((user, auds)) => json!({"authenticated": true, "user": user, "audiences": auds}),
        Err(e) => json!({"user": {}, "error": e}),
    };
    Ok(json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": body["spec"],
        "status": status,
    }))
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`: the caller is the testbed's user.
pub fn self_subject_review() -> Value {
    json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": ops::now()},
        "status": {"userInfo": {"username": ADMIN_USER, "groups": ["system:masters", "system:authenticated"]}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_tampering_fails() {
        let t = sign(&json!({"sub": "x"}));
        assert_eq!(verify(&t).unwrap()["sub"], "x");
        let mut parts: Vec<&str> = t.split('.').collect();
        let other = b64(br#"{"sub":"y"}"#);
        parts[1] = &other;
        assert!(verify(&parts.join(".")).is_none());
    }
}
