//! Any client speaks to a Crimson route: the Protobuf client and a Python script share one
//! chat room with the Rust JSON client. (The browser test is in `browser.rs`.)
//!
//! These need `python3` with `websockets`; `./scripts/test.sh` installs it. Missing, the test
//! fails: never a skip.

mod common;

use std::path::Path;
use std::process::Command;

use common::{client_with, server};

fn examples_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn protobuf_and_json_clients_share_one_chat() {
    let (_server, url) = server(&[]);
    let proto_url = url.replace("/chat", "/chat.proto");
    // Each waits for its own greeting: then its session is surely in its cluster.
    let mut json = client_with(&url, &["--name", "json"]);
    json.expect_line(": hello from json");
    let mut proto = client_with(&proto_url, &["--proto", "--name", "proto"]);
    proto.expect_line(": hello from proto");
    json.type_line("json says hi");
    proto.expect_line(": json says hi");
    proto.type_line("protobuf says hi");
    json.expect_line(": protobuf says hi");
}

#[test]
fn a_python_websockets_client_chats() {
    let python = common::python();
    let has_websockets = Command::new(&python)
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_websockets,
        "{} with the `websockets` package is needed: run ./scripts/test.sh, which makes a \
         virtual environment with it in target/python-venv",
        python.display()
    );
    let (_server, url) = server(&[]);
    let rust = client_with(&url, &["--name", "rust"]);
    rust.expect_line(": hello from rust");
    let script = examples_dir().join("python/chat_client.py");
    let output = Command::new(&python)
        .arg(&script)
        .args([&url, "hello from python"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("extensions: permessage-deflate"),
        "the Python client's messages should be compressed: {stdout}"
    );
    assert!(stdout.contains(": hello from python"));
    rust.expect_line(": hello from python");
}
