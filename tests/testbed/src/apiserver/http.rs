//! HTTP routing: authentication, fault injection and counting, then discovery, OpenAPI and the
//! resource endpoints.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult, Target};
use super::faults::RequestInfo;
use super::negotiate::{self, Shape};
use super::ops::{self, DeleteOpts, FieldValidation, PatchKind, WriteOpts, Written};
use super::registry::{self, KindInfo, ResourceInfo};
use super::selectors::{FieldSelector, LabelSelector};
use super::store::Obj;
use super::watch::{self, WatchParams};
use super::{Shared, aggregated, authn, builtin_objects, discovery, openapi, protobuf, subresources, table};

const BODY_LIMIT: usize = 32 * 1024 * 1024;

fn json_response(code: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).expect("serializes");
    (code, [(http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn not_found_path() -> ApiError {
    let mut e = ApiError::new(404, "NotFound", "the server could not find the requested resource");
    e.details = Some(Box::new(json!({})));
    e
}

/// A request for a resource endpoint.
#[derive(Debug, Clone)]
struct ResourcePath {
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_resource_path(group: &str, version: &str, rest: &[&str]) -> ApiResult<ResourcePath> {
    let (namespace, rest) = match rest {
        ["namespaces", ns, r @ ..]
            if !r.is_empty() && !(group.is_empty() && r.len() == 1 && (r[0] == "status" || r[0] == "finalize")) =>
        {
            (Some(ns.to_string()), r)
        }
        r => (None, r),
    };
    let (plural, name, sub) = match rest {
        [p] => (p, None, None),
        [p, n] => (p, Some(n.to_string()), None),
        [p, n, s] => (p, Some(n.to_string()), Some(s.to_string())),
        _ => return Err(not_found_path()),
    };
    Ok(ResourcePath {
        group: group.into(),
        version: version.into(),
        plural: plural.to_string(),
        namespace,
        name,
        subresource: sub,
    })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

fn authorized(headers: &HeaderMap, sh: &Shared) -> bool {
    bearer(headers).is_some_and(|t| t == sh.token || sh.client_tokens.lock().unwrap().contains(t))
}

/// A client cut off by a partition ([`super::Faults::cut_off`]) gets no answer while it lasts, and
/// nothing it sent is carried out; the bytes of an answer already streaming (a watch) stop coming.
fn partitioned(sh: Arc<Shared>, token: String, response: Response) -> Response {
    use futures::StreamExt;
    let (parts, body) = response.into_parts();
    let stream = futures::stream::unfold(Some(body.into_data_stream()), move |state| {
        let (sh, token) = (sh.clone(), token.clone());
        async move {
            let mut inner = state?;
            let item = inner.next().await?;
            if sh.faults.is_cut_off(&token) {
                sh.faults.while_cut_off(&token).await;
                return None;
            }
            Some((item, Some(inner)))
        }
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

pub async fn handle(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz") {
        return "ok".into_response();
    }
    if !authorized(&parts.headers, &sh) && parts.extensions.get::<super::tls::ClientCertUser>().is_none() {
        return ApiError::unauthorized().into_response();
    }
    let token = bearer(&parts.headers).unwrap_or_default().to_string();
    if sh.faults.is_cut_off(&token) {
        sh.faults.while_cut_off(&token).await;
        return ApiError::service_unavailable("the connection was cut off (a network partition of the testbed)")
            .into_response();
    }
    let latency = sh.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let query: HashMap<String, String> =
        Query::<HashMap<String, String>>::try_from_uri(&parts.uri).map(|q| q.0).unwrap_or_default();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let reg = || sh.store.lock().unwrap().registry.clone();
    let result: ApiResult<Response> = match (parts.method.clone(), segs.as_slice()) {
        (Method::GET, []) => Ok(json_response(
            StatusCode::OK,
            &json!({"paths": ["/api", "/api/v1", "/apis", "/openapi/v3", "/version"]}),
        )),
        (Method::GET, ["version"]) => Ok(json_response(StatusCode::OK, &discovery::version())),
        (Method::GET, [root @ ("api" | "apis")]) => match negotiate::negotiate(&parts.headers) {
            Ok(negotiate::Shape::Discovery { version }) => {
                let doc = aggregated::document(&reg(), *root == "api", &version);
                let mut r = json_response(StatusCode::OK, &doc);
                if let Ok(ct) = http::HeaderValue::from_str(&aggregated::content_type(&version)) {
                    r.headers_mut().insert(http::header::CONTENT_TYPE, ct);
                }
                Ok(r)
            }
            _ if *root == "api" => Ok(json_response(StatusCode::OK, &discovery::api_versions())),
            _ => Ok(json_response(StatusCode::OK, &discovery::api_groups(&reg()))),
        },
        (Method::GET, ["apis", g]) => {
            discovery::api_group(&reg(), g).map(|v| json_response(StatusCode::OK, &v)).ok_or_else(not_found_path)
        }
        (Method::GET, ["api", v]) => discovery::resource_list(&reg(), "", v)
            .map(|v| json_response(StatusCode::OK, &v))
            .ok_or_else(not_found_path),
        (Method::GET, ["apis", g, v]) => {
            discovery::resource_list(&reg(), g, v).map(|v| json_response(StatusCode::OK, &v)).ok_or_else(not_found_path)
        }
        (Method::GET, ["openapi", "v3"]) => Ok(json_response(StatusCode::OK, &openapi::index(&reg()))),
        (Method::GET, ["openapi", "v3", rest @ ..]) => openapi::document(&reg(), &rest.join("/"))
            .map(|v| json_response(StatusCode::OK, &v))
            .ok_or_else(not_found_path),
        (_, ["api", v, rest @ ..]) => {
            resource_request(&sh, &parts, body, &query, parse_resource_path("", v, rest)).await
        }
        (_, ["apis", g, v, rest @ ..]) => {
            resource_request(&sh, &parts, body, &query, parse_resource_path(g, v, rest)).await
        }
        (Method::GET, ["openapi", "v2"]) => Err(not_found_path()),
        _ => Err(not_found_path()),
    };
    let response = result.unwrap_or_else(|e| e.into_response());
    if token.is_empty() || token == sh.token { response } else { partitioned(sh.clone(), token, response) }
}

fn verb_of(method: &Method, rp: &ResourcePath, query: &HashMap<String, String>) -> ApiResult<&'static str> {
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    Ok(match (method, rp.name.is_some()) {
        (&Method::GET, false) if watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) if watch => "watch",
        (&Method::GET, true) => "get",
        (&Method::POST, false) => "create",
        (&Method::POST, true) => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        (m, _) => return Err(ApiError::method_not_allowed(m.as_str(), &rp.plural)),
    })
}

fn param<'a>(q: &'a HashMap<String, String>, k: &str) -> Option<&'a str> {
    q.get(k).map(String::as_str)
}

fn write_opts(parts: &http::request::Parts, q: &HashMap<String, String>, sub: Option<&str>) -> ApiResult<WriteOpts> {
    let manager = match param(q, "fieldManager") {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.split('/').next().unwrap_or(ua).to_string())
            .unwrap_or_else(|| "unknown".into()),
    };
    Ok(WriteOpts {
        dry_run: param(q, "dryRun") == Some("All"),
        field_manager: manager,
        validation: FieldValidation::parse(param(q, "fieldValidation"))?,
        subresource: sub.map(String::from),
        force: param(q, "force") == Some("true"),
    })
}

/// A field selector checked against the labels kube-apiserver supports for the resource.
fn field_selector(ri: &ResourceInfo, s: &str) -> ApiResult<FieldSelector> {
    let custom = match &ri.kind_info {
        KindInfo::Custom(c) => Some(&c.selectable_fields[..]),
        KindInfo::Builtin { .. } => None,
    };
    FieldSelector::parse(s)?.for_resource(&ri.group, &ri.kind, custom)
}

/// The object as the requested version presents it (custom resources and Events share storage).
fn present(ri: &ResourceInfo, obj: &Obj) -> Obj {
    registry::present(obj, &ri.api_version())
}

fn object_response(code: StatusCode, obj: &Value, warnings: &[String]) -> Response {
    let mut r = json_response(code, obj);
    for w in warnings {
        if let Ok(v) = http::HeaderValue::from_str(&format!("299 - {}", json!(w))) {
            r.headers_mut().append(http::header::WARNING, v);
        }
    }
    r
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    ns: String,
    name: String,
}

async fn resource_request(
    sh: &Arc<Shared>,
    parts: &http::request::Parts,
    body: Body,
    query: &HashMap<String, String>,
    rp: ApiResult<ResourcePath>,
) -> ApiResult<Response> {
    let rp = rp?;
    let verb = verb_of(&parts.method, &rp, query)?;
    let counted = match &rp.subresource {
        Some(s) => format!("{}/{s}", rp.plural),
        None => rp.plural.clone(),
    };
    let info = RequestInfo {
        verb: verb.to_string(),
        resource: counted,
        namespace: rp.namespace.clone(),
        name: rp.name.clone(),
    };
    if let Some(e) = sh.faults.on_request(&info) {
        return Err(e);
    }
    let ri = sh.store.lock().unwrap().registry.get(&rp.group, &rp.version, &rp.plural).ok_or_else(not_found_path)?;
    if rp.namespace.is_some() && !ri.namespaced {
        return Err(not_found_path());
    }
    let shape = negotiate::negotiate(&parts.headers)?;
    if matches!(shape, Shape::Discovery { .. }) {
        return Err(negotiate::not_acceptable("APIGroupDiscoveryList is only served at /api and /apis"));
    }
    match rp.subresource.as_deref() {
        None => {}
        Some(s) if ri.has_subresource(s) => {}
        Some(
            s @ ("exec" | "log" | "eviction" | "binding" | "proxy" | "attach" | "portforward" | "resize" | "finalize"),
        ) => {
            return Err(ApiError::not_implemented(format!("the {s} subresource of {}", ri.plural)));
        }
        Some(_) => return Err(not_found_path()),
    }
    let ns = rp.namespace.as_deref();
    if rp.name.is_some() && ri.namespaced && ns.is_none() {
        return Err(not_found_path());
    }
    let allowed = match rp.subresource.as_deref() {
        None => ri.verbs(),
        Some(s) => ri.subresources().into_iter().find(|x| x.name == s).map(|x| x.verbs).unwrap_or_default(),
    };
    if !allowed.contains(&verb) {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ));
    }
    let body = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|e| ApiError::bad_request(e.to_string()))?;
    let ct = parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media_type = ct.split(';').next().unwrap_or_default().trim();
    let body = match media_type {
        _ if body.is_empty() || verb == "patch" => body,
        protobuf::MEDIA_TYPE if !ri.is_custom() => {
            Bytes::from(serde_json::to_vec(&protobuf::decode(&ri, &body)?).expect("serializes"))
        }
        t if t == protobuf::MEDIA_TYPE || t.contains("cbor") => return Err(protobuf::unsupported(&ri)),
        _ => body,
    };
    if let Some(answer) = special_request(sh, &ri, &rp, verb, parts, query, &body)? {
        return Ok(answer);
    }
    if verb == "create" && rp.name.is_some() {
        return Err(ApiError::not_implemented(format!("POST to a named {}", ri.plural)));
    }
    match verb {
        "get" => get(sh, &ri, ns, rp.name.as_deref().unwrap(), &shape, query),
        "list" => list(sh, &ri, ns, &shape, query),
        "watch" => watch_request(sh, &ri, ns, rp.name.as_deref(), &shape, query),
        "create" => {
            let obj: Value = parse_body(&body)?;
            let opts = write_opts(parts, query, None)?;
            let w = ops::create(&mut sh.store.lock().unwrap(), &ri, ns, obj, &opts, false)?;
            written(&ri, w, &shape)
        }
        "update" => {
            let obj: Value = parse_body(&body)?;
            let opts = write_opts(parts, query, rp.subresource.as_deref())?;
            let key = ops::key(&ri, ns, rp.name.as_deref().unwrap());
            let w = ops::update(&mut sh.store.lock().unwrap(), &ri, &key, obj, &opts)?;
            written(&ri, w, &shape)
        }
        "patch" => {
            let ct = parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let kind = PatchKind::from_content_type(ct)?;
            let opts = write_opts(parts, query, rp.subresource.as_deref())?;
            if kind == PatchKind::Apply && param(query, "fieldManager").is_none_or(str::is_empty) {
                return Err(ApiError::bad_request(
                    "PATCH requests with apply content type must specify a fieldManager",
                ));
            }
            let key = ops::key(&ri, ns, rp.name.as_deref().unwrap());
            let w = ops::patch(&mut sh.store.lock().unwrap(), &ri, &key, kind, &body, &opts)?;
            written(&ri, w, &shape)
        }
        "delete" => {
            let opts = delete_opts(&body, query)?;
            let key = ops::key(&ri, ns, rp.name.as_deref().unwrap());
            let (obj, gone) = ops::delete(&mut sh.store.lock().unwrap(), &ri, &key, &opts)?;
            let code = if gone { StatusCode::OK } else { StatusCode::ACCEPTED };
            let obj = present(&ri, &obj);
            let shaped = negotiate::object(&shape, &obj)?;
            Ok(object_response(code, shaped.as_ref().unwrap_or(&obj), &[]))
        }
        "deletecollection" => {
            let opts = delete_opts(&body, query)?;
            let labels = LabelSelector::parse(param(query, "labelSelector").unwrap_or(""))?;
            let fields = field_selector(&ri, param(query, "fieldSelector").unwrap_or(""))?;
            let mut store = sh.store.lock().unwrap();
            let keys: Vec<_> = store
                .list_iter(&ri.storage_key(), ns, None)
                .filter(|(_, _, o)| labels.matches(o) && fields.matches(o))
                .map(|(n, name, _)| ops::key(&ri, Some(n), name))
                .collect();
            let mut items = Vec::new();
            for k in keys {
                if let Ok((o, _)) = ops::delete(&mut store, &ri, &k, &opts) {
                    items.push((*present(&ri, &o)).clone());
                }
            }
            let rv = store.rv().to_string();
            drop(store);
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": ri.list_kind, "apiVersion": ri.api_version(), "metadata": {"resourceVersion": rv}, "items": items}),
            ))
        }
        _ => Err(ApiError::not_implemented(verb)),
    }
}

fn parse_body(body: &Bytes) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .or_else(|_| serde_yaml::from_slice(body))
        .map_err(|e| ApiError::bad_request(format!("the request body could not be decoded: {e}")))
}

fn written(ri: &ResourceInfo, w: Written, shape: &Shape) -> ApiResult<Response> {
    let code = if w.created { StatusCode::CREATED } else { StatusCode::OK };
    let obj = present(ri, &w.obj);
    let shaped = negotiate::object(shape, &obj)?;
    Ok(object_response(code, shaped.as_ref().unwrap_or(&obj), &w.warnings))
}

/// Requests the generic verbs do not serve: the `scale` and `token` subresources and the kinds
/// kube-apiserver computes instead of storing (component statuses, reviews). None: not one of them.
fn special_request(
    sh: &Arc<Shared>,
    ri: &ResourceInfo,
    rp: &ResourcePath,
    verb: &str,
    parts: &http::request::Parts,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> ApiResult<Option<Response>> {
    let ns = rp.namespace.as_deref();
    let name = rp.name.as_deref().unwrap_or_default();
    let ok = |code: StatusCode, v: &Value| Ok(Some(json_response(code, v)));
    match (ri.group.as_str(), ri.plural.as_str(), rp.subresource.as_deref()) {
        (_, _, Some("scale")) => {
            let paths = subresources::scale_paths(ri).ok_or_else(not_found_path)?;
            let key = ops::key(ri, ns, name);
            let opts = write_opts(parts, query, Some("scale"))?;
            let mut store = sh.store.lock().unwrap();
            let scale = match verb {
                "get" => {
                    let t = Target { group: &ri.group, resource: &ri.plural, name };
                    subresources::scale_of(&paths, &*store.get(&key).ok_or_else(|| ApiError::not_found(t))?)
                }
                "update" => subresources::write_scale(&mut store, ri, &paths, &key, parse_body(body)?, &opts)?,
                _ => {
                    let ct = parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
                    let kind = PatchKind::from_content_type(ct)?;
                    subresources::patch_scale(&mut store, ri, &paths, &key, kind, body, &opts)?
                }
            };
            ok(StatusCode::OK, &scale)
        }
        ("", "serviceaccounts", Some("token")) => {
            let req = if body.is_empty() { json!({}) } else { parse_body(body)? };
            let tr = authn::token_request(&sh.store.lock().unwrap(), ns.unwrap_or_default(), name, &req)?;
            ok(StatusCode::CREATED, &tr)
        }
        ("", "componentstatuses", None) => {
            let all = builtin_objects::component_statuses();
            let v = if verb == "get" {
                all.into_iter()
                    .find(|c| c["metadata"]["name"] == name)
                    .ok_or_else(|| ApiError::not_found(Target { group: "", resource: "componentstatuses", name }))?
            } else {
                json!({"kind": "ComponentStatusList", "apiVersion": "v1", "metadata": {}, "items": all})
            };
            Ok(Some(object_response(StatusCode::OK, &v, &[builtin_objects::COMPONENT_STATUS_WARNING.to_string()])))
        }
        ("authentication.k8s.io", "tokenreviews", None) => {
            let review = authn::token_review(&sh.store.lock().unwrap(), &sh.token, &parse_body(body)?)?;
            ok(StatusCode::CREATED, &review)
        }
        ("authentication.k8s.io", "selfsubjectreviews", None) => ok(StatusCode::CREATED, &authn::self_subject_review()),
        _ => Ok(None),
    }
}

fn delete_opts(body: &Bytes, q: &HashMap<String, String>) -> ApiResult<DeleteOpts> {
    let b: Value = if body.is_empty() { json!({}) } else { parse_body(body)? };
    Ok(DeleteOpts {
        propagation: b["propagationPolicy"].as_str().or(param(q, "propagationPolicy")).map(String::from),
        uid: b["preconditions"]["uid"].as_str().map(String::from),
        resource_version: b["preconditions"]["resourceVersion"].as_str().map(String::from),
        dry_run: param(q, "dryRun") == Some("All")
            || b["dryRun"].as_array().is_some_and(|a| a.iter().any(|d| d == "All")),
    })
}

fn get(
    sh: &Arc<Shared>,
    ri: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    shape: &Shape,
    q: &HashMap<String, String>,
) -> ApiResult<Response> {
    let key = ops::key(ri, ns, name);
    let (obj, rv) = {
        let store = sh.store.lock().unwrap();
        (store.get(&key), store.rv())
    };
    let obj = obj.ok_or_else(|| ApiError::not_found(Target { group: &ri.group, resource: &ri.plural, name }))?;
    let obj = present(ri, &obj);
    if *shape == Shape::Table {
        let t = table::table(ri, &[&obj], &rv.to_string(), None, param(q, "includeObject").unwrap_or("Metadata"));
        return Ok(json_response(StatusCode::OK, &t));
    }
    let shaped = negotiate::object(shape, &obj)?;
    Ok(json_response(StatusCode::OK, shaped.as_ref().unwrap_or(&obj)))
}

fn list(
    sh: &Arc<Shared>,
    ri: &ResourceInfo,
    ns: Option<&str>,
    shape: &Shape,
    q: &HashMap<String, String>,
) -> ApiResult<Response> {
    let labels = LabelSelector::parse(param(q, "labelSelector").unwrap_or(""))?;
    let fields = field_selector(ri, param(q, "fieldSelector").unwrap_or(""))?;
    let limit: usize = match param(q, "limit") {
        Some(l) => l.parse::<usize>().map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?,
        None => 0,
    };
    let token: Option<ContinueToken> = match param(q, "continue").filter(|c| !c.is_empty()) {
        Some(c) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(c)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?,
        ),
        None => None,
    };
    let (items, list_rv, next): (Vec<Obj>, u64, Option<String>) = {
        let store = sh.store.lock().unwrap();
        let current = store.rv();
        if let Some(rv) = param(q, "resourceVersion").filter(|r| !r.is_empty() && *r != "0") {
            let n: u64 = rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
            if n > current {
                return Err(ApiError::new(
                    504,
                    "Timeout",
                    format!("Too large resource version: {n}, current: {current}"),
                ));
            }
            if param(q, "resourceVersionMatch") == Some("Exact") && n != current {
                return Err(ApiError::gone(format!("too old resource version: {n} ({current})")));
            }
        }
        let list_rv = match &token {
            Some(t) if t.rv < store.compacted_rv() => {
                return Err(ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ));
            }
            Some(t) => t.rv,
            None => current,
        };
        let after = token.as_ref().map(|t| (t.ns.clone(), t.name.clone()));
        let mut items = Vec::new();
        let mut next = None;
        let mut last: Option<(String, String)> = None;
        let by_name = fields.required_name().map(String::from);
        for (n, name, o) in store.list_iter(&ri.storage_key(), ns, after.as_ref()) {
            if by_name.as_ref().is_some_and(|w| w != name) || !labels.matches(o) || !fields.matches(o) {
                continue;
            }
            if limit > 0 && items.len() == limit {
                let (lns, lname) = last.clone().expect("limit > 0");
                let t = ContinueToken { rv: list_rv, ns: lns, name: lname };
                next = Some(base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&t).expect("json")));
                break;
            }
            last = Some((n.clone(), name.clone()));
            items.push(o.clone());
        }
        (items, list_rv, next)
    };
    let items: Vec<Obj> = items.iter().map(|o| present(ri, o)).collect();
    if *shape == Shape::Table {
        let refs: Vec<&Value> = items.iter().map(|o| &**o).collect();
        let t = table::table(
            ri,
            &refs,
            &list_rv.to_string(),
            next.as_deref(),
            param(q, "includeObject").unwrap_or("Metadata"),
        );
        return Ok(json_response(StatusCode::OK, &t));
    }
    let mut meta = json!({"resourceVersion": list_rv.to_string()});
    if let Some(c) = &next {
        meta["continue"] = json!(c);
    }
    let refs: Vec<&Value> = items.iter().map(|o| &**o).collect();
    if let Some(l) = negotiate::metadata_list(shape, &meta, &refs)? {
        return Ok(json_response(StatusCode::OK, &l));
    }
    let mut out = Vec::with_capacity(256 + items.len() * 512);
    out.extend_from_slice(b"{\"kind\":");
    serde_json::to_writer(&mut out, &ri.list_kind).expect("json");
    out.extend_from_slice(b",\"apiVersion\":");
    serde_json::to_writer(&mut out, &ri.api_version()).expect("json");
    out.extend_from_slice(b",\"metadata\":");
    serde_json::to_writer(&mut out, &meta).expect("json");
    out.extend_from_slice(b",\"items\":[");
    for (i, o) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, &**o).expect("json");
    }
    out.extend_from_slice(b"]}");
    Ok((StatusCode::OK, [(http::header::CONTENT_TYPE, "application/json")], out).into_response())
}

fn watch_request(
    sh: &Arc<Shared>,
    ri: &Arc<ResourceInfo>,
    ns: Option<&str>,
    name: Option<&str>,
    shape: &Shape,
    q: &HashMap<String, String>,
) -> ApiResult<Response> {
    let labels = LabelSelector::parse(param(q, "labelSelector").unwrap_or(""))?;
    let mut fsel = param(q, "fieldSelector").unwrap_or("").to_string();
    if let Some(n) = name {
        fsel = if fsel.is_empty() { format!("metadata.name={n}") } else { format!("{fsel},metadata.name={n}") };
    }
    let fields = field_selector(ri, &fsel)?;
    let rv = match param(q, "resourceVersion").filter(|r| !r.is_empty() && *r != "0") {
        Some(r) => Some(r.parse::<u64>().map_err(|_| ApiError::bad_request(format!("invalid resource version: {r}")))?),
        None => None,
    };
    let send_initial = param(q, "sendInitialEvents") == Some("true");
    let bookmarks = param(q, "allowWatchBookmarks") == Some("true");
    if send_initial && (!bookmarks || param(q, "resourceVersionMatch") != Some("NotOlderThan")) {
        return Err(ApiError::new(
            422,
            "Invalid",
            "sendInitialEvents requires allowWatchBookmarks=true and resourceVersionMatch=NotOlderThan",
        ));
    }
    let timeout = param(q, "timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(sh.options.default_watch_timeout);
    let p = WatchParams {
        storage: ri.storage_key(),
        namespace: ns.map(String::from),
        labels,
        fields,
        resource_version: rv,
        bookmarks,
        send_initial_events: send_initial,
        timeout,
        api_version: ri.api_version(),
        kind: ri.kind.clone(),
        metadata_only: match shape {
            Shape::Metadata { version, .. } => Some(version.clone()),
            _ => None,
        },
        table: (*shape == Shape::Table).then(|| watch::TableWatch {
            resource: ri.clone(),
            include: param(q, "includeObject").unwrap_or("Metadata").to_string(),
            headers_sent: Default::default(),
        }),
    };
    Ok(watch::serve(sh.clone(), p))
}
