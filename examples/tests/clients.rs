//! Any client speaks to a Crimson route: Rust clients in JSON, CBOR and Protobuf, and Python
//! scripts in JSON and CBOR, share one chat room at one URL, each in the codec it asked for.
//! (The browser test, JSON through the TypeScript client, is in `browser.rs`.)
//!
//! These need `python3` with `websockets` and `cbor2`; `./scripts/test.sh` installs them.
//! Missing, the test fails: never a skip.

mod common;

use std::path::Path;
use std::process::Command;

use common::{client_with, server};

fn examples_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `python/chat_client.py URL ARGS...` to its end; what it printed.
fn python_chat(url: &str, args: &[&str]) -> String {
    python_script("chat_client.py", url, args)
}

/// Runs `python/SCRIPT URL ARGS...` to its end; what it printed.
fn python_script(script: &str, url: &str, args: &[&str]) -> String {
    let output = Command::new(common::python())
        .arg(examples_dir().join("python").join(script))
        .arg(url)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn clients_of_three_codecs_share_one_chat() {
    let (_server, url) = server(&[]);
    // Each waits for its own greeting: then its session is surely in its cluster.
    let mut json = client_with(&url, &["--name", "json"]);
    json.expect_line(": hello from json");
    let mut proto = client_with(&url, &["--codec", "protobuf", "--name", "proto"]);
    proto.expect_line(": hello from proto");
    let mut cbor = client_with(&url, &["--codec", "cbor", "--name", "cbor"]);
    cbor.expect_line(": hello from cbor");
    json.expect_line(": hello from cbor");
    proto.expect_line(": hello from cbor");
    json.type_line("json says hi");
    proto.expect_line(": json says hi");
    cbor.expect_line(": json says hi");
    proto.type_line("protobuf says hi");
    json.expect_line(": protobuf says hi");
    cbor.expect_line(": protobuf says hi");
    cbor.type_line("cbor says hi");
    json.expect_line(": cbor says hi");
    proto.expect_line(": cbor says hi");
    // A request (the Crimson protocol, which chat-client asks for): the answer is typed too.
    proto.type_line("/who");
    proto.expect_line("server: 3 here");
    // A Python script speaking CBOR joins the same room: everyone hears it.
    python_chat(&url, &["python in cbor", "--codec", "cbor"]);
    for client in [&json, &proto, &cbor] {
        client.expect_line(": python in cbor");
    }
}

#[test]
fn a_python_websockets_client_chats() {
    let python = common::python();
    let has_packages = Command::new(&python)
        .args(["-c", "import websockets, cbor2"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_packages,
        "{} with the `websockets` and `cbor2` packages is needed: run ./scripts/test.sh, which \
         makes a virtual environment with them in target/python-venv",
        python.display()
    );
    let (_server, url) = server(&[]);
    let rust = client_with(&url, &["--name", "rust"]);
    rust.expect_line(": hello from rust");
    let stdout = python_chat(&url, &["hello from python"]);
    assert!(
        stdout.contains("extensions: permessage-deflate"),
        "the Python client's messages should be compressed: {stdout}"
    );
    assert!(stdout.contains("protocol: none"), "{stdout}");
    assert!(stdout.contains(": hello from python"));
    rust.expect_line(": hello from python");
    // The same script asking for CBOR: the same room, Binary frames of CBOR.
    let stdout = python_chat(&url, &["hello in cbor", "--codec", "cbor"]);
    assert!(stdout.contains("protocol: crimson.cbor"), "{stdout}");
    assert!(stdout.contains(": hello in cbor"), "{stdout}");
    rust.expect_line(": hello in cbor");
}

/// Runs `python/recovering_client.py URL ARGS...` to its end; what it printed.
fn python_recovering(url: &str, args: &[&str]) -> String {
    python_script("recovering_client.py", url, args)
}

#[test]
fn a_python_client_speaking_the_protocol_by_hand_recovers_what_it_missed() {
    let (first, url) = server(&[]);
    let said = python_recovering(&url, &["say", "python was here"]);
    let position: Vec<&str> = said
        .lines()
        .find_map(|line| line.strip_prefix("position "))
        .unwrap_or_else(|| panic!("no position in {said:?}"))
        .split(' ')
        .collect();
    assert_eq!(position[0], "all", "{said}");
    // Said while the Python client is away.
    let rust = client_with(&url, &["--name", "rust"]);
    rust.expect_line(": hello from rust");
    python_recovering(&url, &["say", "meanwhile"]);
    let resumed = python_recovering(&url, &["resume", position[0], position[1], position[2]]);
    let lines: Vec<&str> = resumed.lines().collect();
    assert_eq!(lines.len(), 3, "{resumed}");
    assert!(lines[0].ends_with(": hello from rust"), "{resumed}");
    assert!(lines[1].ends_with(": meanwhile"), "{resumed}");
    assert_eq!(lines[2], "recovered 2");
    // A server restarted (in memory): its history is gone, and the client is told.
    drop(rust);
    drop(first);
    let (_second, url) = server(&[]);
    let resumed = python_recovering(&url, &["resume", position[0], position[1], position[2]]);
    assert_eq!(resumed.trim(), "not recovered: epoch_changed");
}

#[test]
fn chat_client_fails_over_to_another_url_and_recovers() {
    let (first, url) = server(&[]);
    let (_second, other) = server(&[]);
    let watcher = client_with(&url, &["--url", &other, "--name", "watcher"]);
    watcher.expect_line(": hello from watcher");
    // The first server goes: the watcher tries the next URL, a server of its own history (in
    // memory, not shared), so it is told it did not recover, never silently.
    drop(first);
    watcher.expect_line("not recovered: epoch_changed");
    let talker = client_with(&other, &["--name", "talker"]);
    talker.expect_line(": hello from talker");
    watcher.expect_line(": hello from talker");
}
