//! `keymgr encrypt` / `keymgr decrypt` with provider KEKs: an AES key on SoftHSM2
//! (`--kek hsm:[NAMESPACE:]LABEL`) and an RSA key in the Azure Key Vault stand-in
//! (`--kek azure-kv:NAME`). HSM messages are checked both ways against a raw AES keyring
//! holding the provisioned key's value in this process (independent of the HSM).
#![cfg(feature = "envelope")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use keymgr_envelope::{Decryptor, Encryptor, MultiKeyring, RawAesKeyring};
use keymgr_testkit::TempDir;

fn run(mut cmd: Command, stdin: &[u8]) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    // A command that fails before reading its input closes the pipe: its output says why.
    if let Err(e) = pipe.write_all(stdin) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn context() -> keymgr::EncryptionContext {
    [("tenant".to_owned(), "acme".to_owned())].into()
}

fn data() -> Vec<u8> {
    (0..70_000u32).map(|i| (i * 7 % 253) as u8).collect()
}

/// A decryptor/encryptor pair over a raw AES keyring in process memory.
fn raw(namespace: &str, name: &str, key: &[u8]) -> Arc<MultiKeyring> {
    Arc::new(MultiKeyring::new(Arc::new(
        RawAesKeyring::new(namespace, name, key).unwrap(),
    )))
}

#[cfg(feature = "hsm")]
#[tokio::test]
async fn hsm_kek_round_trips_and_matches_a_raw_aes_keyring() {
    let (Ok(label), Ok(key)) = (
        std::env::var("KEYMGR_TEST_HSM_AES_LABEL"),
        std::env::var("KEYMGR_TEST_HSM_AES_KEY"),
    ) else {
        keymgr_testkit::skip_or_fail(
            "the SoftHSM2 test AES key (KEYMGR_TEST_HSM_AES_LABEL)",
            "`cargo xtask test` provisions it into the SoftHSM2 test token",
        );
        return;
    };
    let key = hex::decode(key).unwrap();
    let dir = TempDir::new("cli-hsm-kek");
    let keymgr = |args: &[&str], stdin: &[u8]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
        cmd.args(args)
            .env("KEY_BACKEND", "hsm")
            .env_remove("KEYMGR_AUDIT_PATH")
            .env_remove("KEYMGR_CONFIG");
        run(cmd, stdin)
    };
    let data = data();

    for (spec, namespace) in [
        (format!("hsm:{label}"), "keymgr-hsm"),
        (format!("hsm:acme-ns:{label}"), "acme-ns"),
    ] {
        let enc = dir.path().join(format!("{namespace}.enc"));
        let out = keymgr(
            &[
                "encrypt",
                "--json",
                "--in",
                "-",
                "--out",
                p(&enc),
                "--kek",
                &spec,
                "--context",
                "tenant=acme",
            ],
            &data,
        );
        let summary = json(&out);
        let edks = summary["encrypted_data_keys"].as_array().unwrap();
        assert_eq!(edks.len(), 1, "{summary}");
        assert_eq!(edks[0]["provider_id"], namespace, "{summary}");
        assert_eq!(edks[0]["key"], label.as_str(), "{summary}");
        let message = std::fs::read(&enc).unwrap();

        // The same key value in memory reads what the HSM wrapped ...
        let back = Decryptor::new(raw(namespace, &label, &key))
            .decrypt(&message)
            .await
            .unwrap();
        assert_eq!(back.plaintext, data, "{spec}");

        // ... and the HSM reads what the key value in memory wrapped.
        let theirs = Encryptor::new(raw(namespace, &label, &key))
            .encrypt(&data, &context())
            .await
            .unwrap();
        let out = keymgr(
            &[
                "decrypt",
                "--in",
                "-",
                "--out",
                "-",
                "--kek",
                &spec,
                "--context",
                "tenant=acme",
            ],
            &theirs,
        );
        assert!(
            out.status.success(),
            "{spec}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, data, "{spec}");
    }

    // A namespace the message was not wrapped under finds no key, and says which it tried.
    let theirs = Encryptor::new(raw("keymgr-hsm", &label, &key))
        .encrypt(&data, &context())
        .await
        .unwrap();
    let out = keymgr(
        &[
            "decrypt",
            "--json",
            "--in",
            "-",
            "--out",
            "-",
            "--kek",
            &format!("hsm:other-ns:{label}"),
        ],
        &theirs,
    );
    assert!(!out.status.success());
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["schema"], 1, "{e}");
    assert!(e["error"]["kind"].is_string(), "{e}");
    let shown = format!("{e}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        !shown.contains(&hex::encode(&key)),
        "the KEK value leaked: {shown}"
    );
}

#[cfg(feature = "azure")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_kv_kek_round_trips_through_the_stand_in() {
    use keymgr_testkit::azure::{CLIENT_ID, StandIn, TENANT_ID};
    const SECRET: &str = "cli-kek-SECRET-5e71";
    let stand_in = StandIn::start(SECRET).await;
    stand_in.create_rsa("cli-kek");
    let ca = stand_in.ca_file().display().to_string();
    let url = stand_in.url();
    let keymgr = move |args: Vec<String>, stdin: Vec<u8>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
        cmd.args(args)
            .env_remove("KEYMGR_AUDIT_PATH")
            .env_remove("KEYMGR_CONFIG")
            .env_remove("AZURE_CREDENTIAL_KIND")
            .env_remove("AZURE_XRP_KEY_NAME");
        for (k, v) in [
            ("KEY_BACKEND", "azure-kv"),
            ("AZURE_VAULT_URL", url.as_str()),
            ("AZURE_AUTHORITY_HOST", url.as_str()),
            ("AZURE_TENANT_ID", TENANT_ID),
            ("AZURE_CLIENT_ID", CLIENT_ID),
            ("AZURE_CLIENT_SECRET", SECRET),
            // The backend needs one configured key; the KEK is named by --kek.
            ("AZURE_EVM_KEY_NAME", "cli-kek"),
            ("AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE", "false"),
            ("SSL_CERT_FILE", ca.as_str()),
        ] {
            cmd.env(k, v);
        }
        tokio::task::spawn_blocking(move || run(cmd, &stdin))
    };
    let dir = TempDir::new("cli-azure-kek");
    let enc = dir.path().join("m.enc");
    let args = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let data = data();
    let out = keymgr(
        args(&[
            "encrypt",
            "--json",
            "--in",
            "-",
            "--out",
            p(&enc),
            "--kek",
            "azure-kv:cli-kek",
            "--context",
            "tenant=acme",
        ]),
        data.clone(),
    )
    .await
    .unwrap();
    let summary = json(&out);
    let edks = summary["encrypted_data_keys"].as_array().unwrap();
    assert_eq!(edks.len(), 1, "{summary}");
    assert_eq!(edks[0]["provider_id"], "azure-kv", "{summary}");
    let out = keymgr(
        args(&[
            "decrypt",
            "--in",
            p(&enc),
            "--out",
            "-",
            "--kek",
            "azure-kv:cli-kek",
            "--context",
            "tenant=acme",
        ]),
        Vec::new(),
    )
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, data);
    let shown = String::from_utf8_lossy(&out.stderr);
    assert!(!shown.contains(SECRET), "the client secret leaked: {shown}");

    // A key name Key Vault cannot have is refused before any call, naming the flag.
    let out = keymgr(
        args(&[
            "encrypt",
            "--json",
            "--in",
            "-",
            "--out",
            "-",
            "--kek",
            "azure-kv:bad/name",
        ]),
        b"x".to_vec(),
    )
    .await
    .unwrap();
    assert!(!out.status.success());
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["error"]["kind"], "invalid_input", "{e}");
}
