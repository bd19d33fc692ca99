//! The builders (names, labels, owners, the Exact path, one rule per domain), the existing-Ingress
//! patch and its removal, and the diagnoses of the self-check.

use super::*;
use k8s_openapi::api::networking::v1::IngressSpec;

const OWNER: Owner<'static> = Owner { namespace: "shop", name: "acme", uid: "uid-1" };

fn files() -> Vec<FileChallenge> {
    vec![
        FileChallenge { domain: "example.com".into(), file: "fileauth.txt".into(), content: "v-apex".into() },
        FileChallenge { domain: "www.example.com".into(), file: "fileauth.txt".into(), content: "v-www".into() },
    ]
}

fn assert_owned(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    assert_eq!(meta.name.as_deref(), Some("certorder-solver-acme"));
    assert_eq!(meta.namespace.as_deref(), Some("shop"));
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels.get(MANAGED_BY_LABEL).map(String::as_str), Some("certorder"));
    assert_eq!(labels.get(ORDER_LABEL).map(String::as_str), Some("acme"));
    let owners = meta.owner_references.as_ref().unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].kind, "CertificateOrder");
    assert_eq!(owners[0].api_version, "certorder.io/v1alpha1");
    assert_eq!(owners[0].uid, "uid-1");
    assert_eq!(owners[0].controller, Some(true));
}

#[test]
fn names_fit_a_dns_label() {
    assert_eq!(solver_name("acme"), "certorder-solver-acme");
    let long = solver_name(&"a".repeat(200));
    assert!(long.len() <= 63, "{long}");
    assert_ne!(solver_name(&"a".repeat(200)), solver_name(&format!("{}b", "a".repeat(199))));
    let dotted = solver_name("shop.example");
    assert!(!dotted.contains('.') && dotted.len() <= 63, "{dotted}");
}

#[test]
fn targets_split_into_host_and_file() {
    assert_eq!(
        parse_target("http://example.com/.well-known/pki-validation/fileauth.txt").unwrap(),
        ("example.com".into(), "fileauth.txt".into())
    );
    assert!(parse_target("https://example.com/.well-known/pki-validation/fileauth.txt").is_err());
    assert!(parse_target("http://example.com/other/fileauth.txt").is_err());
    assert!(parse_target("http://example.com/.well-known/pki-validation/../x").is_err());
    assert!(parse_target("http://Ex_ample.com/.well-known/pki-validation/f").is_err());
}

#[test]
fn config_map_holds_each_domains_exact_content() {
    let cm = config_map(&OWNER, &files());
    assert_owned(&cm.metadata);
    let data = cm.data.unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data["example.com_fileauth.txt"], "v-apex");
    assert_eq!(data["www.example.com_fileauth.txt"], "v-www");
}

#[test]
fn solver_pod_runs_non_root_read_only_with_the_configmap_mounted() {
    let pod = solver_pod(&OWNER, "registry.example/certorder:1", &["regcred".into()]);
    assert_owned(&pod.metadata);
    let spec = pod.spec.unwrap();
    assert_eq!(spec.automount_service_account_token, Some(false));
    let pull = spec.image_pull_secrets.as_ref().unwrap();
    assert_eq!(pull.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["regcred"]);
    let c = &spec.containers[0];
    assert_eq!(c.image.as_deref(), Some("registry.example/certorder:1"));
    assert_eq!(c.args.as_ref().unwrap()[..3], ["solver".to_string(), "--dir".into(), SOLVER_DIR.into()]);
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(c.volume_mounts.as_ref().unwrap()[0].mount_path, SOLVER_DIR);
    let volume = &spec.volumes.unwrap()[0];
    assert_eq!(volume.config_map.as_ref().unwrap().name, "certorder-solver-acme");
    let service = solver_service(&OWNER);
    assert_owned(&service.metadata);
    let selector = service.spec.unwrap().selector.unwrap();
    assert_eq!(pod.metadata.labels.unwrap().get(SOLVER_LABEL), selector.get(SOLVER_LABEL));
}

#[test]
fn ingress_has_one_exact_rule_per_domain_to_the_solver() {
    let ing = ingress(&OWNER, Some("nginx"), &files(), IngressPathType::Exact);
    assert_owned(&ing.metadata);
    let annotations = ing.metadata.annotations.unwrap();
    assert!(annotations.iter().all(|(k, v)| !k.contains("redirect") || v == "false"), "{annotations:?}");
    let spec = ing.spec.unwrap();
    assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
    assert!(spec.tls.is_none());
    let rules = spec.rules.unwrap();
    assert_eq!(rules.len(), 2);
    for (rule, domain) in rules.iter().zip(["example.com", "www.example.com"]) {
        assert_eq!(rule.host.as_deref(), Some(domain));
        let paths = &rule.http.as_ref().unwrap().paths;
        assert_eq!(paths.len(), 1);
        assert_eq!(paths[0].path.as_deref(), Some("/.well-known/pki-validation/fileauth.txt"));
        assert_eq!(paths[0].path_type, "Exact");
        let backend = paths[0].backend.service.as_ref().unwrap();
        assert_eq!(backend.name, "certorder-solver-acme");
        assert_eq!(backend.port.as_ref().unwrap().number, Some(SOLVER_PORT));
    }
    assert!(ingress(&OWNER, None, &files(), IngressPathType::default()).spec.unwrap().ingress_class_name.is_none());
}

#[test]
fn http_route_attaches_to_the_gateway_with_exact_paths() {
    let gateway =
        GatewayRef { name: "public".into(), namespace: Some("infra".into()), section_name: Some("http".into()) };
    let route = http_route(&OWNER, &gateway, &files());
    assert_eq!(route["kind"], "HTTPRoute");
    assert_eq!(route["metadata"]["name"], "certorder-solver-acme");
    assert_eq!(route["metadata"]["labels"][ORDER_LABEL], "acme");
    assert_eq!(route["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(
        route["spec"]["parentRefs"][0],
        json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "infra", "sectionName": "http"})
    );
    assert_eq!(route["spec"]["hostnames"], json!(["example.com", "www.example.com"]));
    assert_eq!(
        route["spec"]["rules"][0]["matches"],
        json!([{"path": {"type": "Exact", "value": "/.well-known/pki-validation/fileauth.txt"}}])
    );
    assert_eq!(
        route["spec"]["rules"][0]["backendRefs"][0],
        json!({"name": "certorder-solver-acme", "port": SOLVER_PORT})
    );
}

fn users_ingress() -> Ingress {
    serde_json::from_value(json!({
        "metadata": {"name": "website", "namespace": "shop"},
        "spec": {"rules": [{"host": "example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
        ]}}]},
    }))
    .unwrap()
}

#[test]
fn paths_are_added_to_an_existing_ingress_and_removed_leaving_it_as_it_was() {
    let original = users_ingress();
    let patched = add_paths(&original, &OWNER, &files(), IngressPathType::Exact).expect("paths to add");
    let rules = patched.spec.as_ref().unwrap().rules.clone().unwrap();
    assert_eq!(rules.len(), 2, "a rule for the domain without one");
    let apex = &rules[0].http.as_ref().unwrap().paths;
    assert_eq!(apex.len(), 2);
    assert_eq!(apex[0].path_type, "Exact");
    assert_eq!(apex[1].path.as_deref(), Some("/"), "the user's path stays");
    assert!(add_paths(&patched, &OWNER, &files(), IngressPathType::Exact).is_none(), "adding twice changes nothing");
    let restored = remove_paths(&patched, &OWNER).expect("paths to remove");
    assert_eq!(restored, original);
    assert!(remove_paths(&original, &OWNER).is_none());
    let empty = Ingress { spec: Some(IngressSpec::default()), ..Default::default() };
    assert!(remove_paths(&empty, &OWNER).is_none());
}

fn answer(status: u16, location: Option<&str>, content_type: &str, body: &[u8]) -> Answer {
    Answer {
        status,
        location: location.map(String::from),
        content_type: Some(content_type.into()),
        body: body.to_vec(),
        total_len: body.len() as u64,
    }
}

#[test]
fn diagnoses_say_what_to_fix() {
    assert_eq!(diagnose("v1", &answer(200, None, "text/plain", b"v1")), "");
    // A followed redirect seen on its own (the checker follows it; see below).
    let d = diagnose(
        "v1",
        &answer(308, Some("https://example.com/.well-known/pki-validation/fileauth.txt"), "text/html", b""),
    );
    assert_eq!(d, "redirected (308 to https://example.com/.well-known/pki-validation/fileauth.txt)");
    assert!(diagnose("v1", &answer(302, None, "text/html", b"")).starts_with("answered 302 without a Location"));
    assert!(
        diagnose("v1", &answer(303, Some("http://www.example.com/x"), "text/plain", b""))
            .starts_with("redirected with 303 to http://www.example.com/x: the CA follows only 301, 302, 307 and 308")
    );
    assert!(diagnose("v1", &answer(200, None, "text/plain", b"v1\n")).starts_with("content has a trailing newline"));
    assert!(diagnose("v1", &answer(200, None, "text/plain", b"v1\r\n")).starts_with("content has a trailing newline"));
    assert!(
        diagnose("v1", &answer(200, None, "text/html", b"<!DOCTYPE html><html>shop</html>"))
            .starts_with("served by another backend (got HTML")
    );
    assert!(
        diagnose("v1", &answer(404, None, "text/html", b"<html>default backend</html>"))
            .starts_with("served by another backend (got HTML")
    );
    assert!(diagnose("v1", &answer(404, None, "text/plain", b"not found\n")).starts_with("answered 404"));
    assert!(
        diagnose("v1", &answer(503, None, "text/html", b"<html>503</html>"))
            .starts_with("no ready backend behind the route (503)")
    );
    assert!(
        diagnose("v1", &answer(200, None, "text/plain", b" v1 ")).starts_with("content has surrounding whitespace")
    );
    assert_eq!(diagnose("v1", &answer(200, None, "text/plain", b"v2")), "content differs from the expected value");
}

#[test]
fn first_bytes_show_newlines() {
    assert_eq!(first_bytes(b"v1\r\n"), "v1\\r\\n");
    assert!(first_bytes(&[b'a'; 100]).ends_with('…'));
}

#[tokio::test]
async fn unresolvable_names_and_closed_ports_are_diagnosed() {
    // A name server that does not answer makes the name unresolvable, quickly.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut config = crate::validation::dns::DnsCheckerConfig::with_nameservers(vec![silent.local_addr().unwrap()]);
    config.timeout = Duration::from_millis(100);
    config.attempts = 1;
    let dns = Arc::new(DnsChecker::new(config).unwrap());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let checker = HttpChecker::new(dns, Ports { http: port, https: port });
    let seen = checker.check("http://example.com/.well-known/pki-validation/fileauth.txt", "v").await;
    assert!(!seen.passed);
    assert!(seen.diagnosis.starts_with("name does not resolve"), "{seen:?}");
    let seen = checker.check("http://127.0.0.1/.well-known/pki-validation/fileauth.txt", "v").await;
    assert!(seen.diagnosis.starts_with("connection refused"), "{seen:?}");
}

/// A server on loopback answering each request with `answer(path)` (a raw HTTP response), over
/// TLS with a self-signed certificate when `tls`.
async fn answering(tls: bool, answer: fn(&str) -> String) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tls.then(|| {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S, answer: fn(&str) -> String) {
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap_or(0);
        let request = String::from_utf8_lossy(&buf[..n]).into_owned();
        let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let _ = s.write_all(answer(&path).as_bytes()).await;
        let _ = s.shutdown().await;
    }
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            match &acceptor {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve(stream, answer).await;
                    }
                }
                None => serve(stream, answer).await,
            }
        }
    });
    port
}

fn redirect(status: u16, location: &str) -> String {
    format!("HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

fn file(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Baseline Requirements 3.2.2.4.18: 301, 302, 307 and 308 to http or https on ports 80 and 443
/// are followed (https with any certificate); other redirects are diagnosed as the CA refuses them.
#[tokio::test]
async fn redirects_are_followed_as_the_ca_follows_them() {
    let dns = Arc::new(DnsChecker::new(crate::validation::dns::DnsCheckerConfig::with_nameservers(vec![])).unwrap());
    const URL: &str = "http://127.0.0.1/.well-known/pki-validation/fileauth.txt";
    let https = answering(true, |_| file("v1")).await;
    for status in FOLLOWED_REDIRECTS {
        let http = match status {
            301 => answering(false, |p| redirect(301, &format!("https://127.0.0.1{p}"))).await,
            302 => answering(false, |p| redirect(302, &format!("https://127.0.0.1{p}"))).await,
            307 => {
                answering(false, |_| redirect(307, "https://127.0.0.1:443/.well-known/pki-validation/fileauth.txt"))
                    .await
            }
            _ => answering(false, |_| redirect(308, "https://127.0.0.1/.well-known/pki-validation/fileauth.txt")).await,
        };
        let seen = HttpChecker::new(dns.clone(), Ports { http, https }).check(URL, "v1").await;
        assert!(seen.passed, "{status}: {seen:?}");
        assert_eq!(seen.location.as_deref(), Some("https://127.0.0.1/.well-known/pki-validation/fileauth.txt"));
        assert_eq!(seen.status_code, Some(200));
    }

    // Followed, then the content is judged where the redirects led.
    let wrong = answering(true, |_| file("v1\n")).await;
    let http = answering(false, |p| redirect(308, &format!("https://127.0.0.1{p}"))).await;
    let seen = HttpChecker::new(dns.clone(), Ports { http, https: wrong }).check(URL, "v1").await;
    assert!(
        seen.diagnosis.starts_with("after 1 redirect(s), at https://127.0.0.1/.well-known/pki-validation/fileauth.txt: content has a trailing newline"),
        "{seen:?}"
    );

    for (answer, diagnosis) in [
        (
            (|_: &str| redirect(302, "http://127.0.0.1:8080/.well-known/pki-validation/fileauth.txt"))
                as fn(&str) -> String,
            "redirected to http://127.0.0.1:8080/.well-known/pki-validation/fileauth.txt, on port 8080: the CA follows redirects only to port 80 (http) or 443 (https)",
        ),
        (
            |_| redirect(301, "ftp://127.0.0.1/fileauth.txt"),
            "redirected to ftp://127.0.0.1/fileauth.txt: the CA follows redirects only to http:// and https:// URLs",
        ),
        (
            |_| redirect(303, "/elsewhere"),
            "redirected with 303 to /elsewhere: the CA follows only 301, 302, 307 and 308 redirects",
        ),
        (|p| redirect(302, p), "more than 10 redirects"),
    ] {
        let http = answering(false, answer).await;
        let seen = HttpChecker::new(dns.clone(), Ports { http, https }).check(URL, "v1").await;
        assert!(!seen.passed);
        assert!(seen.diagnosis.starts_with(diagnosis), "{seen:?}");
    }
}

#[test]
fn only_public_addresses_are_public() {
    for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
        assert!(is_public(public.parse().unwrap()), "{public}");
    }
    for private in [
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "192.0.2.1",
        "255.255.255.255",
        "::1",
        "fd00::1",
        "fe80::1",
        "2001:db8::1",
        "::ffff:10.0.0.1",
    ] {
        assert!(!is_public(private.parse().unwrap()), "{private}");
    }
}

/// A public name redirected into the cluster's private addresses is not fetched: the operator
/// runs inside the cluster, the CA does not.
#[tokio::test]
async fn a_redirect_from_a_public_name_to_a_private_address_is_not_fetched() {
    let dns = Arc::new(DnsChecker::new(crate::validation::dns::DnsCheckerConfig::with_nameservers(vec![])).unwrap());
    let port = answering(false, |_| file("internal data")).await;
    let checker = HttpChecker::new(dns, Ports { http: port, https: port });
    let url = url::Url::parse("http://127.0.0.1/.well-known/pki-validation/fileauth.txt").unwrap();
    let refused = checker.fetch(&url, true).await.unwrap_err();
    assert!(refused.diagnosis.contains("is not a public one"), "{refused:?}");
    assert_eq!(refused.first_bytes, "", "nothing of it is shown");
    // A name that points at a private address from the start (a local CA in a lab) is fetched.
    assert!(checker.fetch(&url, false).await.is_ok());
}
