//! Any client speaks to a Crimson route: the Protobuf client, a Python script and a real
//! browser (headless Chromium driven by playwright-core), all in one chat room.
//!
//! These need `python3` with `websockets`, `node` with `examples/browser/node_modules`, and
//! Debian's `chromium`; `./scripts/test.sh` installs them. Missing, they fail: never a skip.

mod common;

use std::path::Path;
use std::process::Command;

use common::{client, client_with, server, server_on, Program};

fn examples_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn protobuf_and_json_clients_share_one_chat() {
    let (_server, url) = server(&[]);
    let proto_url = url.replace("/chat", "/chat.proto");
    let mut json = client(&url);
    let mut proto = client_with(&proto_url, &["--proto"]);
    proto.expect_line(": hello from chat-client");
    json.type_line("json says hi");
    proto.expect_line(": json says hi");
    proto.type_line("protobuf says hi");
    json.expect_line(": protobuf says hi");
}

#[test]
fn a_python_websockets_client_chats() {
    let has_websockets = Command::new("python3")
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_websockets,
        "python3 with the `websockets` package is needed: run ./scripts/test.sh, which installs it \
         (pip install websockets)"
    );
    let (_server, url) = server(&[]);
    let rust = client(&url);
    let script = examples_dir().join("python/chat_client.py");
    let output = Command::new("python3")
        .arg(&script)
        .args([&url, "hello from python"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains(": hello from python"));
    rust.expect_line(": hello from python");
}

#[test]
fn the_browser_page_chats_and_reconnects_in_chromium() {
    let browser_dir = examples_dir().join("browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run ./scripts/test.sh, which runs `npm ci` in examples/browser"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists() || std::env::var_os("CHROMIUM").is_some(),
        "Debian's chromium is needed (/usr/bin/chromium): run ./scripts/test.sh, which installs it"
    );

    let (server, url) = server(&[]);
    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches("/chat")
        .to_owned();
    let mut test = Program::start(
        "node",
        &[
            browser_dir.join("chat-test.mjs").to_str().unwrap(),
            &format!("http://{addr}/"),
        ],
    );
    test.expect_line("READY-FOR-RESTART");
    drop(server);
    // Both pages see the server go and start retrying; then it comes back on the same port.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (_server, _) = server_on(&addr, &[]);
    test.type_line("RESTARTED");
    test.expect_line("OK");
    let status = test.child.wait().unwrap();
    assert!(status.success(), "the browser test script failed");
}
