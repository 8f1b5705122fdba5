//! The `onex` command-line contract, by running the binary: output formats, exit codes,
//! errors on stderr that say what to fix.

use std::process::{Command, Output};

fn onex(bus: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_onex"))
        .arg("--bus")
        .arg(bus)
        .args(args)
        .env_remove("ONEX_BUS")
        .env_remove("ONEX_REGISTRY")
        .output()
        .expect("run onex")
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

fn bus(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("bus.db").display())
}

#[test]
fn publish_then_consume_from_beginning_with_json() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus(&dir);
    let out = onex(
        &bus,
        &[
            "--json",
            "publish",
            "--topic",
            "orders",
            "--event-type",
            "shop.order.v1",
            "--key",
            "o-1",
            "--payload",
            r#"{"sku":"a"}"#,
            "--count",
            "5",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let receipts = json_lines(&out);
    assert_eq!(receipts.len(), 5);
    assert!(receipts.iter().all(|r| r["topic"] == "orders" && r["partition"] == receipts[0]["partition"]), "one key, one partition");
    let offsets: Vec<u64> = receipts.iter().map(|r| r["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4]);

    let out =
        onex(&bus, &["--json", "consume", "--topic", "orders", "--group", "g1", "--count", "5", "--timeout", "30", "--from-beginning"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events = json_lines(&out);
    let seqs: Vec<u64> = events.iter().map(|e| e["payload"]["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
    assert!(events.iter().all(|e| e["payload"]["sku"] == "a" && e["event_type"] == "shop.order.v1" && e["partition_key"] == "o-1"));
    let ids: Vec<&str> = receipts.iter().map(|r| r["envelope_id"].as_str().unwrap()).collect();
    let got: Vec<&str> = events.iter().map(|e| e["envelope_id"].as_str().unwrap()).collect();
    assert_eq!(ids, got);

    // The group committed: a second consume sees nothing old and times out with an error.
    let out = onex(&bus, &["consume", "--topic", "orders", "--group", "g1", "--count", "1", "--timeout", "1", "--from-beginning"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("received 0 of 1"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn consume_with_count_does_not_acknowledge_what_it_did_not_print() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus(&dir);
    assert!(onex(&bus, &["publish", "--topic", "t", "--event-type", "e.v1", "--key", "k", "--payload", "{}", "--count", "6"])
        .status
        .success());
    let first = onex(&bus, &["--json", "consume", "--topic", "t", "--group", "g", "--count", "2", "--timeout", "30", "--from-beginning"]);
    assert!(first.status.success());
    let rest = onex(&bus, &["--json", "consume", "--topic", "t", "--group", "g", "--count", "4", "--timeout", "30", "--from-beginning"]);
    assert!(rest.status.success(), "{}", String::from_utf8_lossy(&rest.stderr));
    let seqs: Vec<u64> = json_lines(&first).iter().chain(json_lines(&rest).iter()).map(|e| e["payload"]["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn topics_create_list_describe_delete() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus(&dir);
    assert!(onex(&bus, &["topics", "create", "audit", "--partitions", "3"]).status.success());
    let out = onex(&bus, &["--json", "topics", "list"]);
    let list = json_lines(&out);
    assert!(list.iter().any(|t| t["name"] == "audit" && t["partitions"] == 3), "{list:?}");
    let out = onex(&bus, &["--json", "topics", "describe", "audit"]);
    let d = &json_lines(&out)[0];
    assert_eq!(d["partitions"].as_array().unwrap().len(), 3);
    let dup = onex(&bus, &["topics", "create", "audit", "--partitions", "3"]);
    assert_eq!(dup.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    assert!(onex(&bus, &["topics", "delete", "audit"]).status.success());
    let gone = onex(&bus, &["topics", "describe", "audit"]);
    assert_eq!(gone.status.code(), Some(2));
}

#[test]
fn errors_say_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus(&dir);
    let cases: [(&str, Vec<&str>, &str); 5] = [
        ("carrier://x", vec!["topics", "list"], "unknown bus scheme"),
        ("not a url", vec!["topics", "list"], "invalid bus URL"),
        (&bus, vec!["publish", "--topic", "bad/topic", "--event-type", "e.v1"], "invalid topic name"),
        (&bus, vec!["publish", "--topic", "t", "--event-type", "e.v1", "--payload", "{nope"], "not valid JSON"),
        (&bus, vec!["publish", "--topic", "Orders"], "pass --event-type"),
    ];
    for (bus, args, expect) in cases {
        let out = onex(bus, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: expected {expect:?} in {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
    // A password in a bus URL never reaches the terminal.
    let out = onex("kafka://user:hunter2@127.0.0.1:1?bogus.setting=1", &["topics", "list"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("hunter2"));
}

#[test]
fn demo_runs_the_whole_flow() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_onex")).args(["demo", "--json"]).current_dir(dir.path()).env_remove("ONEX_BUS").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = &json_lines(&out)[0];
    assert_eq!(summary["bus"], "sqlite");
    assert_eq!(summary["orders"], 5);
    assert_eq!(summary["batch_published"], 5, "the orders go out as one batch");
    assert_eq!(summary["reserved"], 5);
    assert_eq!(summary["payments"], 5);
    assert_eq!(summary["dlq"], 1);
    assert_eq!(summary["replayed"], 1);
    assert_eq!(summary["retries_absorbed"], 1);
    assert!(dir.path().join(".onex/demo.db").exists());
}
