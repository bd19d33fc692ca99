//! Domain names as the vendor and the certificate need them: ASCII (punycode), unique.

use std::collections::BTreeSet;

/// Converts the spec's names to ASCII (IDNA/punycode), keeping a leading `*.`, and refuses
/// names that cannot be certified, with a message that says which and why.
pub fn normalize_domains(domains: &[String]) -> Result<Vec<String>, String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(domains.len());
    for raw in domains {
        let (wildcard, rest) = match raw.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, raw.as_str()),
        };
        if rest.contains('*') {
            return Err(format!("domain {raw:?}: a wildcard may only be the whole first label, as in *.example.com"));
        }
        let ascii = idna::domain_to_ascii_strict(rest)
            .map_err(|_| format!("domain {raw:?} is not a valid internationalised domain name"))?;
        if !ascii.contains('.') {
            return Err(format!(
                "domain {raw:?} has a single label; public CAs only certify names under a registered domain"
            ));
        }
        let name = if wildcard { format!("*.{ascii}") } else { ascii };
        if !seen.insert(name.clone()) {
            return Err(format!("domain {raw:?} is listed twice (as {name})"));
        }
        out.push(name);
    }
    if out.is_empty() {
        return Err("spec.domains is empty: list at least one name".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(names: &[&str]) -> Result<Vec<String>, String> {
        normalize_domains(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn converts_and_refuses() {
        type Case<'a> = (&'a [&'a str], Result<&'a [&'a str], &'a str>);
        let cases: &[Case] = &[
            (&["example.com"], Ok(&["example.com"])),
            (&["*.example.com", "example.com"], Ok(&["*.example.com", "example.com"])),
            (&["bücher.de"], Ok(&["xn--bcher-kva.de"])),
            (&["*.中国.example.cn"], Ok(&["*.xn--fiqs8s.example.cn"])),
            (&["a.*.example.com"], Err("wildcard may only be the whole first label")),
            (&["localhost"], Err("single label")),
            (&["bücher.de", "xn--bcher-kva.de"], Err("listed twice")),
            (&["exa mple.com"], Err("not a valid internationalised domain name")),
            (&[], Err("empty")),
        ];
        for (input, want) in cases {
            match (norm(input), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{input:?}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{input:?}: {got}"),
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
