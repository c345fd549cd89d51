use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

use super::*;
use crate::ErrorKind;

fn not_utf8() -> OsString {
    OsString::from_vec(vec![b'a', 0xff, b'b'])
}

fn variable(e: &Error) -> &str {
    match e {
        Error::Config { variable, .. } => variable,
        other => panic!("not a config error: {other:?}"),
    }
}

#[test]
fn unset_empty_and_blank_are_not_set() {
    let map = MapSource::new().with("EMPTY", "").with("BLANK", "  \t");
    let vars = Vars::new(&map);
    for name in ["UNSET", "EMPTY", "BLANK"] {
        assert_eq!(vars.get(name).unwrap(), None, "{name}");
        assert_eq!(vars.parse::<u32>(name, "n").unwrap(), None);
        assert_eq!(vars.flag(name).unwrap(), None);
        assert_eq!(vars.path(name).unwrap(), None);
        assert_eq!(vars.origin(name), Origin::Default);
    }
    let e = vars.require("EMPTY", "a value").unwrap_err();
    assert_eq!(variable(&e), "EMPTY");
}

#[test]
fn get_trims_and_secret_does_not() {
    let map = MapSource::new().with("A", "  x y  ");
    let vars = Vars::new(&map);
    assert_eq!(vars.get("A").unwrap().as_deref(), Some("x y"));
    assert_eq!(vars.secret("A").unwrap().as_deref(), Some("  x y  "));
}

#[test]
fn non_utf8_is_an_error_naming_the_variable_except_for_paths() {
    let map = MapSource::new().with("V", not_utf8());
    let vars = Vars::new(&map);
    let errors = [
        vars.get("V").unwrap_err(),
        vars.secret("V").unwrap_err(),
        vars.parse::<u8>("V", "n").unwrap_err(),
        vars.bounded::<u8>("V", 0..=1, "n").unwrap_err(),
        vars.flag("V").unwrap_err(),
        vars.duration("V", TimeUnit::Secs, 0..=1).unwrap_err(),
        vars.key_ref("V").unwrap_err(),
        vars.choice("V", &[("a", 1)]).unwrap_err(),
    ];
    for e in errors {
        assert_eq!(e.kind(), ErrorKind::Config);
        assert_eq!(variable(&e), "V");
    }
    assert_eq!(vars.path("V").unwrap(), Some(PathBuf::from(not_utf8())));
    assert_eq!(vars.os("V"), Some(not_utf8()));
}

#[test]
fn bounded_refuses_out_of_range_overflow_and_junk() {
    let cases = [
        ("1000000000000", "above the maximum"),
        ("18446744073709551615", "above the maximum"),
        ("99999999999999999999999999", "above the maximum"),
        ("0", "below the minimum"),
        ("-1", "not a whole number"),
        ("1.5", "not a whole number"),
        ("0x10", "not a whole number"),
        ("ten", "not a whole number"),
        ("+", "not a whole number"),
    ];
    for (value, why) in cases {
        let map = MapSource::new().with("N", value);
        let e = Vars::new(&map)
            .bounded::<usize>("N", 1..=1024, "sessions")
            .unwrap_err();
        let Error::Config {
            variable,
            expected,
            reason,
            ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(variable, "N");
        assert!(expected.contains("from 1 to 1024"), "{expected}");
        assert!(reason.contains(why), "{value}: {reason}");
    }
    for (value, n) in [("1", 1), (" 1024 ", 1024), ("+7", 7), ("007", 7)] {
        let map = MapSource::new().with("N", value);
        assert_eq!(
            Vars::new(&map)
                .bounded::<usize>("N", 1..=1024, "n")
                .unwrap(),
            Some(n)
        );
    }
}

#[test]
fn durations_flags_choices_and_keys() {
    let map = MapSource::new()
        .with("MS", "250")
        .with("DAYS", "2")
        .with("F1", "TRUE")
        .with("F0", "off")
        .with("FX", "maybe")
        .with("C", "Buffered")
        .with("K", "xrp@3")
        .with("KBAD", "xrp@");
    let vars = Vars::new(&map);
    assert_eq!(
        vars.duration("MS", TimeUnit::Millis, 0..=1000).unwrap(),
        Some(Duration::from_millis(250))
    );
    assert_eq!(
        vars.duration("DAYS", TimeUnit::Days, 1..=3650).unwrap(),
        Some(Duration::from_secs(2 * 86_400))
    );
    assert!(vars.duration("MS", TimeUnit::Millis, 0..=100).is_err());
    assert_eq!(vars.flag("F1").unwrap(), Some(true));
    assert_eq!(vars.flag("F0").unwrap(), Some(false));
    assert_eq!(variable(&vars.flag("FX").unwrap_err()), "FX");
    assert_eq!(
        vars.choice("C", &[("durable", 1), ("buffered", 2)])
            .unwrap(),
        Some(2)
    );
    assert!(vars.choice("C", &[("durable", 1)]).is_err());
    let k = vars.key_ref("K").unwrap().unwrap();
    assert_eq!((k.name(), k.version()), ("xrp", Some("3")));
    assert_eq!(variable(&vars.key_ref("KBAD").unwrap_err()), "KBAD");
}

#[test]
fn secrets_never_appear_in_errors() {
    let secret = "s3cr3t-Zq9-value";
    let map = MapSource::new().with("PIN", secret);
    // Debug of a source lists names only.
    assert!(!format!("{map:?}").contains(secret));
    let vars = Vars::new(&map);
    assert_eq!(vars.secret("PIN").unwrap().as_deref(), Some(secret));
}

#[test]
fn layers_follow_precedence_and_report_origin() {
    let flags = MapSource::new().with("A", "flag");
    let env = |name: &str| match name {
        "A" | "B" => Some("env".to_owned()),
        "E" => Some(String::new()),
        _ => None,
    };
    let file = MapSource::new()
        .with("A", "file")
        .with("B", "file")
        .with("C", "file")
        .with("E", "file");
    let layered = Layered::new()
        .layer(Origin::Flag, flags)
        .layer(Origin::Env, env)
        .layer(Origin::File, file);
    let vars = Vars::new(&layered);
    let got = |n| (vars.get(n).unwrap(), vars.origin(n));
    assert_eq!(got("A"), (Some("flag".into()), Origin::Flag));
    assert_eq!(got("B"), (Some("env".into()), Origin::Env));
    assert_eq!(got("C"), (Some("file".into()), Origin::File));
    assert_eq!(got("D"), (None, Origin::Default));
    // Set but empty in the environment: unset, the file does not apply.
    assert_eq!(got("E"), (None, Origin::Default));
}

#[test]
fn closures_are_sources() {
    let f = |name: &str| (name == "X").then(|| "1".to_owned());
    let vars = Vars::new(&f);
    assert_eq!(vars.parse::<u8>("X", "n").unwrap(), Some(1));
    assert_eq!(vars.origin("X"), Origin::Env);
}

#[test]
fn collecting_records_every_problem_and_reads_it_as_unset() {
    let map = MapSource::new()
        .with("A", "ten")
        .with("B", not_utf8())
        .with("C", "maybe")
        .with("OK", "5");
    let problems = Problems::new();
    let outer = Vars::collecting(&map, &problems);
    // A loader builds its own reader over the one it is given: it collects too.
    let vars = Vars::new(&outer);
    assert_eq!(vars.bounded::<u32>("A", 0..=9, "n").unwrap(), None);
    assert_eq!(vars.get("B").unwrap(), None);
    assert_eq!(vars.flag("C").unwrap(), None);
    assert_eq!(vars.bounded::<u32>("OK", 0..=9, "n").unwrap(), Some(5));
    // A loader's later "not set" for a refused variable is not listed twice.
    problems.record_new(Error::config("A", "n", "not set"));
    let names: Vec<String> = problems
        .take()
        .iter()
        .map(|e| variable(e).to_owned())
        .collect();
    assert_eq!(names, ["A", "B", "C"]);
    assert!(problems.take().is_empty());
}

fn short_id(v: &str) -> std::result::Result<String, String> {
    if v.len() <= 4 {
        Ok(v.to_uppercase())
    } else {
        Err(format!("{v:?} is longer than 4 characters"))
    }
}

#[test]
fn checked_converts_or_names_the_variable_with_the_reason() {
    let map = MapSource::new().with("OK", " ab ").with("BAD", "abcdef");
    let vars = Vars::new(&map);
    assert_eq!(
        vars.checked("OK", "an id", short_id).unwrap().as_deref(),
        Some("AB")
    );
    assert_eq!(vars.checked("UNSET", "an id", short_id).unwrap(), None);
    let e = vars.checked("BAD", "an id", short_id).unwrap_err();
    let Error::Config {
        variable,
        expected,
        reason,
        ..
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!((variable.as_str(), expected.as_str()), ("BAD", "an id"));
    assert!(reason.contains("longer than 4"), "{reason}");
}

#[test]
fn keys_reads_each_set_variable_and_refuses_none_set() {
    let pairs = [("P_EVM_ID", "evm"), ("P_XRP_ID", "xrp")];
    let map = MapSource::new().with("P_XRP_ID", "x1");
    let keys = Vars::new(&map)
        .keys(&pairs, "an id", "p", short_id)
        .unwrap();
    assert_eq!(
        keys.into_iter().collect::<Vec<_>>(),
        [("xrp".to_owned(), "X1".to_owned())]
    );

    let bad = MapSource::new()
        .with("P_EVM_ID", "e1")
        .with("P_XRP_ID", "toolong");
    let e = Vars::new(&bad)
        .keys(&pairs, "an id", "p", short_id)
        .unwrap_err();
    assert_eq!(variable(&e), "P_XRP_ID");

    let e = Vars::new(&MapSource::new())
        .keys(&pairs, "an id", "p", short_id)
        .unwrap_err();
    assert_eq!(variable(&e), "P_EVM_ID / P_XRP_ID");
    assert_eq!(e.kind(), ErrorKind::Config);
}
