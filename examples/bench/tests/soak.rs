//! The soak program, small: 200 connections, 3 s, a broadcast every 100 ms. It must end with
//! success and report nothing lost, its counts matching the server's. (No timing is
//! asserted: the machine is shared.)

use std::process::Command;

#[test]
fn a_short_soak_loses_nothing() {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("soak-test");
    let run = Command::new(env!("CARGO_BIN_EXE_soak"))
        .args([
            "--conns",
            "200",
            "--secs",
            "3",
            "--period-ms",
            "100",
            "--out",
        ])
        .arg(&out)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the soak program starts");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "soak exited with {}\n{stdout}\n{stderr}",
        run.status
    );
    assert!(
        stdout.contains("| messages lost (gaps, or missing at the end) | 0 | ✅ |"),
        "{stdout}"
    );

    let json = std::fs::read_to_string(out.join("soak.json")).expect("soak.json is written");
    let report: serde_json::Value = serde_json::from_str(&json).expect("soak.json is JSON");
    assert_eq!(report["passed"], true);
    assert_eq!(report["settings"]["broadcasts"], 30);
    assert_eq!(report["clients"]["lost"], 0);
    assert_eq!(report["clients"]["duplicated_or_reordered"], 0);
    assert_eq!(report["clients"]["received"], 200 * 30);
    assert_eq!(report["server"]["queued"], 200 * 30);
    assert_eq!(report["server"]["outbox_sent"], 200 * 30);
    assert_eq!(report["leak_check"]["sessions_left"], 0);
    assert!(out.join("soak.md").exists());
}
