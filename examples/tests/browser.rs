//! A real browser speaks to a Crimson route: two headless Chromium pages (playwright-core)
//! on the chat page, over the Crimson protocol (`crimson.v1.json`): a message typed in one
//! appears in the other, "Who is here?" (a request) is answered with the number of pages
//! connected, a page whose connection is cut (through the script's own TCP proxy) gets what
//! was said meanwhile once each and shows "recovered 2", and both reconnect when the server
//! restarts on the same port, showing "not recovered: epoch_changed" (an in-memory history
//! does not survive a restart). Every frame one page sends and receives is checked against
//! the generated types and the protocol's headers and rules (`examples/browser/chat-test.mjs`).
//! In a test binary of its own, so that no other test can take the port while the server is
//! down.
//!
//! Needs `node` with `examples/browser/node_modules` and Debian's `chromium`;
//! `./scripts/test.sh` installs them. Missing, the test fails: never a skip.

mod common;

use std::path::Path;

use common::{server, server_on, Program};

#[test]
fn the_browser_page_chats_and_reconnects_in_chromium() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
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
