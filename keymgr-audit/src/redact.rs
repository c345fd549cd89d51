//! Redaction applied to every record before it is hashed, written or traced, so a
//! secret handed to the audit log by mistake never reaches the file or a log shipper.
//!
//! - a detail whose *name* suggests a secret (PIN, password, secret, token, credential,
//!   private key, seed, mnemonic, API key, authorization, cookie) is replaced whole;
//! - inside any value, an XRPL family seed (checked by decoding it), a PEM private key,
//!   the word after a secret-ish label (`PIN 1234`, `token: abc`) and the value of a
//!   secret-ish `name=value` pair are replaced;
//! - values are capped at [`MAX_VALUE_CHARS`] characters.

use keymgr_core::AuditRecord;

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Longest detail value kept (longer values are cut and marked).
pub const MAX_VALUE_CHARS: usize = 2048;

/// Label words that mark the next value as secret (compared case-insensitively against
/// the parts of a name split at `_`, `-`, `.`, and spaces).
const SECRET_WORDS: &[&str] = &[
    "pin",
    "pins",
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "secrets",
    "token",
    "tokens",
    "credential",
    "credentials",
    "seed",
    "mnemonic",
    "privkey",
    "apikey",
    "authorization",
    "cookie",
    "bearer",
];

/// Adjacent word pairs that mark a secret (`private_key`, `api key`, `client secret`).
const SECRET_PAIRS: &[(&str, &str)] = &[
    ("private", "key"),
    ("secret", "key"),
    ("api", "key"),
    ("signing", "key"),
    ("access", "key"),
    ("session", "key"),
];

fn name_parts(name: &str) -> Vec<String> {
    // Split camelCase too: "clientSecret" -> ["client", "secret"].
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                parts.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            parts.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    parts
}

/// Whether a field or label name suggests that its value is a secret.
pub fn is_secret_name(name: &str) -> bool {
    let parts = name_parts(name);
    parts.iter().any(|p| SECRET_WORDS.contains(&p.as_str()))
        || parts
            .windows(2)
            .any(|w| SECRET_PAIRS.contains(&(w[0].as_str(), w[1].as_str())))
        || {
            let joined: String = parts.concat();
            [
                "privatekey",
                "secretkey",
                "apikey",
                "clientsecret",
                "accesstoken",
            ]
            .iter()
            .any(|s| joined.contains(s))
        }
}

fn is_xrpl_seed(word: &str) -> bool {
    word.starts_with('s')
        && (25..=35).contains(&word.len())
        && keymgr_core::xrpl::decode_seed(word).is_ok()
}

fn trim_punct(w: &str) -> &str {
    w.trim_matches(|c: char| !c.is_alphanumeric())
}

/// Redacts secrets inside a free-text value (see the module docs).
pub fn redact_value(value: &str) -> String {
    if value.contains("PRIVATE KEY-----") {
        return REDACTED.to_owned();
    }
    // One word with no `name=value` or `name: value` in it (an algorithm, a route):
    // only a seed can hide in it. The same result as the loop below, without its
    // allocations: most values in an entry are like this.
    if value.len() <= MAX_VALUE_CHARS
        && !value.contains(|c: char| c.is_whitespace() || c == '=' || c == ':')
        && !is_xrpl_seed(trim_punct(value))
    {
        return value.to_owned();
    }
    redact_words(value)
}

/// The word-by-word redaction of [`redact_value`].
fn redact_words(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut redact_next = false;
    for piece in value.split_inclusive(char::is_whitespace) {
        let word = piece.trim_end_matches(char::is_whitespace);
        let ws = &piece[word.len()..];
        let core = trim_punct(word);
        let replaced = if core.is_empty() {
            word.to_owned()
        } else if redact_next {
            // "Authorization: Bearer <token>": the scheme word is not the secret.
            redact_next = matches!(core.to_lowercase().as_str(), "bearer" | "basic");
            if redact_next {
                word.to_owned()
            } else {
                REDACTED.to_owned()
            }
        } else if let Some((name, _)) = word
            .split_once(['=', ':'])
            .filter(|(n, v)| !trim_punct(v).is_empty() && is_secret_name(n))
        {
            format!("{name}{}{REDACTED}", &word[name.len()..=name.len()])
        } else if is_xrpl_seed(core) {
            word.replace(core, REDACTED)
        } else {
            // `PIN 1234`, `token: abc`, `password= hunter2`.
            redact_next =
                is_label_word(core) || (is_secret_name(core) && word.ends_with([':', '=']));
            word.to_owned()
        };
        out.push_str(&replaced);
        out.push_str(ws);
    }
    if out.chars().count() > MAX_VALUE_CHARS {
        let cut: String = out.chars().take(MAX_VALUE_CHARS).collect();
        return format!("{cut}…[truncated]");
    }
    out
}

/// Single words that are followed by the secret itself in free text ("PIN 1234").
fn is_label_word(core: &str) -> bool {
    let lower = core.to_lowercase();
    matches!(
        lower.as_str(),
        "pin" | "password" | "passwd" | "passphrase" | "secret" | "token" | "seed" | "bearer"
    )
}

/// Returns `record` with every secret-looking detail redacted (see the module docs).
pub fn redact_record(mut record: AuditRecord) -> AuditRecord {
    for (name, value) in record.details.iter_mut() {
        if is_secret_name(name) {
            *value = REDACTED.to_owned();
        } else {
            *value = redact_value(value);
        }
    }
    if let Some(actor) = &record.actor {
        record.actor = Some(redact_value(actor));
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymgr_core::{AuditEvent, Outcome};

    // rippled's documented example seeds (public test vectors, never funded).
    const SEED_ED: &str = "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r";
    const SEED_K1: &str = "snoPBrXtMeMyMHUVTgbuqAfg1SUTb";

    #[test]
    fn secret_names() {
        for n in [
            "pin",
            "HSM_PIN",
            "user-pin",
            "password",
            "client_secret",
            "clientSecret",
            "AZURE_CLIENT_SECRET",
            "token",
            "session.token",
            "private_key",
            "privateKey",
            "seed",
            "XRP_SEED",
            "mnemonic",
            "api_key",
            "ApiKey",
            "Authorization",
            "credentials",
            "EVM_PRIVATE_KEY",
        ] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in [
            "key",
            "payload_kind",
            "algorithm",
            "error",
            "old_id",
            "new_public_key",
            "shipping",
            "spinner",
            "checkpoint_hash",
        ] {
            assert!(!is_secret_name(n), "{n}");
        }
    }

    /// The single-word fast path of `redact_value` gives what the word loop gives.
    #[test]
    fn single_word_fast_path_matches_the_loop() {
        let long = "x".repeat(MAX_VALUE_CHARS + 1);
        let words = [
            "",
            "secp256k1-ecdsa",
            "prehash",
            "--",
            "(s)",
            SEED_ED,
            SEED_K1,
            &format!("({SEED_ED}),"),
            &format!("s{}", &SEED_ED[1..]),
            "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2X",
            "pin",
            "PIN",
            "token",
            "Bearer",
            "ÄÖÜ-ß",
            "日本語",
            &long,
            &"é".repeat(MAX_VALUE_CHARS / 2 + 1),
        ];
        for w in words {
            assert_eq!(redact_value(w), redact_words(w), "{w:?}");
        }
    }

    #[test]
    fn values() {
        assert_eq!(
            redact_value("login failed: PIN 123456 rejected"),
            "login failed: PIN [REDACTED] rejected"
        );
        assert_eq!(
            redact_value("bad HSM_PIN=9876 given"),
            "bad HSM_PIN=[REDACTED] given"
        );
        assert_eq!(redact_value("password: hunter2"), "password: [REDACTED]");
        assert_eq!(redact_value(&format!("seed {SEED_ED}.")), "seed [REDACTED]");
        assert_eq!(
            redact_value(&format!("derived from ({SEED_K1})")),
            "derived from ([REDACTED])"
        );
        assert_eq!(
            redact_value("-----BEGIN PRIVATE KEY-----\nMC4CAQ\n-----END PRIVATE KEY-----"),
            REDACTED
        );
        assert_eq!(
            redact_value("Authorization: Bearer abc.def"),
            "Authorization: Bearer [REDACTED]"
        );
        // Ordinary text is kept, including words that merely contain a secret word.
        let plain = "key evm not found: the env backend holds only [\"xrp\"] (spinning)";
        assert_eq!(redact_value(plain), plain);
        let long = "x".repeat(MAX_VALUE_CHARS + 10);
        assert!(redact_value(&long).ends_with("…[truncated]"));
    }

    #[test]
    fn records() {
        let r = AuditRecord::new(AuditEvent::SignFailure, "hsm", "evm", Outcome::Failure)
            .detail("pin", "1234")
            .detail("client_secret", "abc")
            .detail("error", format!("seed {SEED_ED} invalid"))
            .detail("algorithm", "secp256k1");
        let r = redact_record(r);
        assert_eq!(r.details["pin"], REDACTED);
        assert_eq!(r.details["client_secret"], REDACTED);
        assert_eq!(r.details["error"], "seed [REDACTED] invalid");
        assert_eq!(r.details["algorithm"], "secp256k1");
    }
}
