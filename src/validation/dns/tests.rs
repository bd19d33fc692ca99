//! The checker against the testbed's DNS server (hickory-server on loopback).

use std::net::Ipv4Addr;
use std::time::Duration;

use testbed::dns::TestDns;

use super::*;

const NAME: &str = "_dnsauth.example.com";
const TOKEN: &str = "202603010000002x4lpjqbg1rwx2h7o3mkbbl8fjwa3rbfqq2cbs0ndhg6rsywvo";

fn checker_for(servers: &[&TestDns]) -> DnsChecker {
    let config = DnsCheckerConfig {
        timeout: Duration::from_millis(500),
        attempts: 1,
        ..DnsCheckerConfig::with_nameservers(servers.iter().map(|s| s.addr()).collect())
    };
    DnsChecker::new(config).expect("checker")
}

#[tokio::test]
async fn single_server_table() {
    let dns = TestDns::start(&["example.com", "example.org"]).await.unwrap();
    let checker = checker_for(&[&dns]);
    let server = dns.addr().to_string();

    // (what to set up, expected matched, found, diagnosis fragment)
    type Setup = fn(&TestDns) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    let cases: Vec<(&str, Setup, bool, Vec<String>, String)> = vec![
        (
            "no records at all",
            |_d| Box::pin(async {}),
            false,
            vec![],
            format!("name does not resolve: {NAME} does not exist on {server}"),
        ),
        (
            "other records but no TXT",
            |d| Box::pin(async move { d.set_a(NAME, Ipv4Addr::new(192, 0, 2, 1)).await.unwrap() }),
            false,
            vec![],
            format!("TXT record not found at {NAME} on {server}"),
        ),
        (
            "wrong value",
            |d| Box::pin(async move { d.set_txt(NAME, &["x"]).await.unwrap() }),
            false,
            vec!["x".into()],
            format!("found \"x\" but expected \"{TOKEN}\" at {NAME} on {server}"),
        ),
        (
            "expected among several",
            |d| Box::pin(async move { d.set_txt(NAME, &["old", TOKEN]).await.unwrap() }),
            true,
            vec!["old".into(), TOKEN.into()],
            format!("found the expected TXT record at {NAME} on {server}"),
        ),
        (
            "exact",
            |d| Box::pin(async move { d.set_txt(NAME, &[TOKEN]).await.unwrap() }),
            true,
            vec![TOKEN.into()],
            "found the expected".into(),
        ),
        (
            "removed again",
            |d| Box::pin(async move { d.remove_txt(NAME).await.unwrap() }),
            false,
            vec![],
            "TXT record not found".into(),
        ),
    ];
    for (what, setup, matched, found, fragment) in cases {
        setup(&dns).await;
        let seen = checker.check_txt(NAME, TOKEN).await;
        assert_eq!(seen.matched, matched, "{what}: {seen:?}");
        let mut got = seen.found.clone();
        got.sort();
        let mut want = found.clone();
        want.sort();
        assert_eq!(got, want, "{what}: {seen:?}");
        assert!(seen.diagnosis.contains(&fragment), "{what}: {:?} lacks {fragment:?}", seen.diagnosis);
        assert_eq!(seen.server, server, "{what}");
    }
    assert!(dns.queries() >= 6, "{}", dns.queries());
}

#[tokio::test]
async fn trailing_dot_and_case_do_not_matter() {
    let dns = TestDns::start(&["example.com"]).await.unwrap();
    dns.set_txt(NAME, &[TOKEN]).await.unwrap();
    let checker = checker_for(&[&dns]);
    assert!(checker.check_txt("_DNSAUTH.Example.com.", TOKEN).await.matched);
    // TXT values are compared exactly
    assert!(!checker.check_txt(NAME, &TOKEN.to_uppercase()).await.matched);
}

#[tokio::test]
async fn mixed_servers_report_the_one_that_disagrees() {
    let a = TestDns::start(&["example.com"]).await.unwrap();
    let b = TestDns::start(&["example.com"]).await.unwrap();
    a.set_txt(NAME, &[TOKEN]).await.unwrap();
    b.set_txt(NAME, &["stale"]).await.unwrap();
    let checker = checker_for(&[&a, &b]);
    let seen = checker.check_txt(NAME, TOKEN).await;
    assert!(!seen.matched, "{seen:?}");
    assert_eq!(seen.server, b.addr().to_string());
    assert_eq!(seen.found, vec!["stale".to_string()]);
    assert!(
        seen.diagnosis.starts_with("servers disagree: 1 of 2 have the expected value; found \"stale\""),
        "{}",
        seen.diagnosis
    );

    b.set_txt(NAME, &[TOKEN]).await.unwrap();
    let seen = checker.check_txt(NAME, TOKEN).await;
    assert!(seen.matched, "{seen:?}");
    assert_eq!(seen.server, format!("{}, {}", a.addr(), b.addr()));
}

#[tokio::test]
async fn a_slow_server_is_a_timeout_not_a_match() {
    let a = TestDns::start(&["example.com"]).await.unwrap();
    let slow = TestDns::start(&["example.com"]).await.unwrap();
    a.set_txt(NAME, &[TOKEN]).await.unwrap();
    slow.set_txt(NAME, &[TOKEN]).await.unwrap();
    slow.set_delay(Duration::from_secs(3));
    let checker = checker_for(&[&a, &slow]);
    let started = std::time::Instant::now();
    let seen = checker.check_txt(NAME, TOKEN).await;
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(!seen.matched, "{seen:?}");
    assert_eq!(seen.server, slow.addr().to_string());
    assert!(seen.diagnosis.contains(&format!("timeout (500ms) asking {}", slow.addr())), "{}", seen.diagnosis);
}

#[tokio::test]
async fn follows_cnames_like_a_ca() {
    let dns = TestDns::start(&["example.com", "validation.example.org"]).await.unwrap();
    dns.set_cname(NAME, "example.com.validation.example.org").await.unwrap();
    let checker = checker_for(&[&dns]);
    let seen = checker.check_txt(NAME, TOKEN).await;
    assert!(!seen.matched);
    assert!(seen.diagnosis.contains("example.com.validation.example.org"), "{}", seen.diagnosis);
    dns.set_txt("example.com.validation.example.org", &[TOKEN]).await.unwrap();
    let seen = checker.check_txt(NAME, TOKEN).await;
    assert!(seen.matched, "{seen:?}");
    assert!(
        seen.diagnosis.contains("_dnsauth.example.com is an alias of example.com.validation.example.org"),
        "{}",
        seen.diagnosis
    );
}

#[tokio::test]
async fn long_and_many_values_come_back_whole_over_tcp() {
    let dns = TestDns::start(&["example.com"]).await.unwrap();
    let long = "a".repeat(600); // three character-strings in one record
    let many: Vec<String> = (0..12).map(|i| format!("{i:02}{}", "b".repeat(200))).collect();
    let mut values: Vec<&str> = many.iter().map(String::as_str).collect();
    values.push(&long);
    dns.set_txt(NAME, &values).await.unwrap(); // > 1232 bytes: UDP answer is truncated
    let checker = checker_for(&[&dns]);
    let before = dns.queries();
    let seen = checker.check_txt(NAME, &long).await;
    assert!(seen.matched, "{}", seen.diagnosis);
    assert_eq!(dns.queries() - before, 2, "a truncated UDP answer, then the same query over TCP");
    assert_eq!(seen.found.len(), 13);
    assert!(seen.found.contains(&long));
}

#[tokio::test]
async fn discovers_the_authoritative_servers_through_the_resolver() {
    let dns = TestDns::start(&["example.com"]).await.unwrap();
    dns.set_txt(NAME, &[TOKEN]).await.unwrap();
    let config = DnsCheckerConfig {
        resolvers: Some(vec![dns.addr()]),
        nameserver_port: dns.addr().port(),
        timeout: Duration::from_millis(500),
        attempts: 1,
        ..Default::default()
    };
    let checker = DnsChecker::new(config).unwrap();
    let seen = checker.check_txt("_dnsauth.www.example.com", TOKEN).await;
    assert!(!seen.matched);
    let label = format!("ns1.example.com (127.0.0.1:{})", dns.addr().port());
    assert!(seen.diagnosis.contains(&format!("does not exist on {label}")), "{}", seen.diagnosis);
    let seen = checker.check_txt(NAME, TOKEN).await;
    assert!(seen.matched, "{}", seen.diagnosis);
    assert_eq!(seen.server, label);

    let outside = checker.check_txt("_dnsauth.not-served.test", TOKEN).await;
    assert!(!outside.matched);
    assert!(!outside.diagnosis.is_empty());
    eprintln!("outside any zone: {}", outside.diagnosis);
}

#[test]
fn reads_nameservers_from_resolv_conf() {
    let text = "# generated\nsearch cluster.local\nnameserver 10.96.0.10\nnameserver  2001:db8::1\nnameserver fe80::1%eth0\noptions ndots:5\nnameserver bogus\n";
    let got: Vec<String> = parse_resolv_conf(text).iter().map(|a| a.to_string()).collect();
    assert_eq!(got, vec!["10.96.0.10:53", "[2001:db8::1]:53", "[fe80::1]:53"]);
}

#[tokio::test]
async fn cname_challenge_judgement() {
    let dns = TestDns::start(&["example.com"]).await.unwrap();
    let checker = checker_for(&[&dns]);
    let name = "_0a1b2c.example.com";
    let want = "t1.dcv.ca.example";

    // Nothing there: say what to create.
    let o = checker.check_cname(name, want).await;
    assert!(!o.matched);
    assert!(o.diagnosis.contains("create CNAME _0a1b2c.example.com → t1.dcv.ca.example"), "{}", o.diagnosis);

    // A TXT where the CA wants a CNAME.
    dns.set_txt(name, &[want]).await.unwrap();
    let o = checker.check_cname(name, want).await;
    assert!(!o.matched);
    assert!(o.diagnosis.contains("looks for a CNAME"), "{}", o.diagnosis);
    dns.remove_txt(name).await.unwrap();

    // A CNAME elsewhere.
    dns.set_cname(name, "other.example.net").await.unwrap();
    let o = checker.check_cname(name, want).await;
    assert!(!o.matched);
    assert_eq!(o.found, vec!["other.example.net".to_string()]);
    assert!(o.diagnosis.contains("is a CNAME to other.example.net"), "{}", o.diagnosis);
    assert_eq!(checker.cname_at(name).await.as_deref(), Some("other.example.net"));

    // The expected target, whatever its case and trailing dot.
    dns.set_cname(name, "T1.DCV.ca.example.").await.unwrap();
    let o = checker.check_cname(name, "t1.dcv.ca.example.").await;
    assert!(o.matched, "{}", o.diagnosis);
    assert!(o.diagnosis.contains("found the expected CNAME"), "{}", o.diagnosis);
    assert_eq!(checker.cname_at("_dnsauth.example.com").await, None);
}
