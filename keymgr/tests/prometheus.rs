//! `keymgr::prometheus`: after a few signatures through a configured manager, the scraped
//! text has the operation counters and latency histograms by provider, operation, key
//! and outcome, the errors by kind, and no key material, digest or signature anywhere.
//! (One test in this binary: it installs the process-wide recorder.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use keymgr::{ErrorKind, KeyRef, MemberConfig, SignPayload, metrics};

const KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

/// One sample line: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the text exposition format's sample lines (comments skipped).
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}').expect("closing brace")),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            (name.to_owned(), labels, value.parse().expect("a number"))
        })
        .collect()
}

fn find<'a>(all: &'a [Sample], name: &str, want: &[(&str, &str)]) -> Option<&'a Sample> {
    all.iter().find(|(n, labels, _)| {
        n == name
            && want
                .iter()
                .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
    })
}

#[tokio::test]
async fn scraped_text_has_counters_and_histograms_by_provider_key_and_outcome() {
    let handle = keymgr::prometheus::install_recorder().unwrap();
    let vars: BTreeMap<&str, String> = [
        ("KEY_BACKENDS", "env".to_owned()),
        ("EVM_PRIVATE_KEY", format!("0x{KEY}")),
        ("KEYMGR_HEALTH_KEYS", "evm".to_owned()),
        ("KEYMGR_RATE_LIMIT_PER_MINUTE", "0".to_owned()),
    ]
    .into_iter()
    .collect();
    let var = |name: &str| vars.get(name).cloned();
    let config = MemberConfig::from_vars(&var).unwrap().unwrap();
    let manager = keymgr::members::manager_from_members(config, &var)
        .await
        .unwrap();

    let digests = [[0x11u8; 32], [0x22; 32], [0x33; 32]];
    let mut signatures = Vec::new();
    for digest in digests {
        let sig = manager
            .sign(&KeyRef::new("evm"), &SignPayload::Prehash(digest))
            .await
            .unwrap();
        signatures.push(hex::encode(sig.to_bytes()));
    }
    let e = manager
        .sign(&KeyRef::new("nope"), &SignPayload::Prehash([0x44; 32]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let public = manager.public_key(&KeyRef::new("evm")).await.unwrap();

    handle.run_upkeep();
    let text = handle.render();
    let all = samples(&text);

    let signed = find(
        &all,
        metrics::OPERATIONS_TOTAL,
        &[
            ("provider", "env"),
            ("operation", "sign"),
            ("key", "evm"),
            ("outcome", "success"),
        ],
    )
    .unwrap_or_else(|| panic!("no successful sign counter in:\n{text}"));
    assert_eq!(signed.2, 3.0, "{text}");
    let not_found = find(
        &all,
        metrics::ERRORS_TOTAL,
        // KeyManager learns the key's algorithm first: the public key lookup fails.
        &[
            ("provider", "env"),
            ("operation", "public_key"),
            ("key", "nope"),
            ("kind", "not_found"),
        ],
    )
    .unwrap_or_else(|| panic!("no not_found error counter in:\n{text}"));
    assert_eq!(not_found.2, 1.0);
    // A Prometheus histogram (buckets, sum, count), not a summary.
    let histogram = format!("{}_count", metrics::OPERATION_DURATION_SECONDS);
    let count = find(
        &all,
        &histogram,
        &[
            ("provider", "env"),
            ("operation", "sign"),
            ("key", "evm"),
            ("outcome", "success"),
        ],
    )
    .unwrap_or_else(|| panic!("no {histogram} in:\n{text}"));
    assert_eq!(count.2, 3.0);
    let bucket = format!("{}_bucket", metrics::OPERATION_DURATION_SECONDS);
    let inf = find(
        &all,
        &bucket,
        &[
            ("operation", "sign"),
            ("key", "evm"),
            ("outcome", "success"),
            ("le", "+Inf"),
        ],
    )
    .unwrap_or_else(|| panic!("no +Inf bucket in:\n{text}"));
    assert_eq!(inf.2, 3.0);

    // Labels are names only: no key material, digest, signature or public key.
    let label_names: BTreeSet<&str> = all
        .iter()
        .flat_map(|(_, labels, _)| labels.keys().map(String::as_str))
        .collect();
    let allowed = [
        "provider",
        "operation",
        "key",
        "outcome",
        "kind",
        "state",
        "member",
        "cache",
        "result",
        "event",
        "le",
        "quantile",
    ];
    assert!(
        label_names.iter().all(|l| allowed.contains(l)),
        "{label_names:?}"
    );
    let lower = text.to_lowercase();
    let mut secrets = vec![
        KEY.to_owned(),
        hex::encode(public.to_bytes()),
        public.evm_address().unwrap().to_lowercase()[2..].to_owned(),
    ];
    secrets.extend(digests.iter().map(hex::encode));
    secrets.extend(signatures);
    for secret in secrets {
        assert!(!lower.contains(&secret), "{secret} appears in:\n{text}");
    }
}
