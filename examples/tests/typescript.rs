//! The browser's side of the types: the chat page and the TypeScript client compile under
//! `tsc --strict`, the committed JavaScript is what `tsc` makes of the committed TypeScript,
//! and (with the `ts` feature) the committed definitions are what ts-rs makes of the Rust
//! messages, a Rust message changed in a field makes the page's TypeScript fail to compile,
//! and serde's JSON for the shapes a message may take type-checks against what ts-rs writes.
//!
//! Needs `node` and `examples/browser/node_modules` (`typescript`, pinned in
//! `package-lock.json`); `./scripts/test.sh` installs them. Missing, the tests fail: never a
//! skip.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("examples/ has a parent")
        .to_owned()
}

/// The pinned `tsc`.
fn tsc_path() -> PathBuf {
    let tsc = root().join("examples/browser/node_modules/.bin/tsc");
    assert!(
        tsc.exists(),
        "TypeScript is not installed: run ./scripts/test.sh, which runs `npm ci` in examples/browser"
    );
    tsc
}

/// Runs `tsc -p project [extra…]`; returns whether it passed and what it printed.
fn tsc(project: &Path, extra: &[&str]) -> (bool, String) {
    let output = Command::new(tsc_path())
        .arg("-p")
        .arg(project)
        .args(extra)
        .output()
        .unwrap_or_else(|err| panic!("cannot run tsc (is node installed?): {err}"));
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// An empty directory of this test's own under Cargo's scratch space.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("typescript-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The TypeScript sources and their tsconfigs, laid out as in the repository under `dir`,
/// without any compiled output.
fn copy_sources(dir: &Path) {
    let root = root();
    for project in ["clients/ts", "examples/browser"] {
        std::fs::create_dir_all(dir.join(project)).unwrap();
        std::fs::copy(
            root.join(project).join("tsconfig.json"),
            dir.join(project).join("tsconfig.json"),
        )
        .unwrap();
    }
    copy_tree(&root.join("clients/ts/src"), &dir.join("clients/ts/src"));
    copy_tree(
        &root.join("examples/browser/ts"),
        &dir.join("examples/browser/ts"),
    );
}

/// Every file under `dir`, by its path relative to `dir`, with its contents.
fn files_under(dir: &Path) -> Vec<(String, String)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let name = path
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    if dir.is_dir() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

#[test]
fn the_client_and_the_page_type_check_under_strict() {
    let root = root();
    for project in ["clients/ts", "examples/browser"] {
        let (ok, output) = tsc(&root.join(project), &["--noEmit"]);
        assert!(ok, "tsc -p {project} --noEmit failed:\n{output}");
    }
}

#[test]
fn the_committed_javascript_is_what_tsc_makes_of_the_typescript() {
    let dir = scratch("emit");
    copy_sources(&dir);
    // The library first: the page type-checks against its declarations.
    for project in ["clients/ts", "examples/browser"] {
        let (ok, output) = tsc(&dir.join(project), &[]);
        assert!(ok, "tsc -p {project} failed:\n{output}");
    }
    let root = root();
    for out in ["clients/ts/dist", "examples/static/js"] {
        let made = files_under(&dir.join(out));
        let committed = files_under(&root.join(out));
        assert!(!made.is_empty(), "tsc wrote nothing to {out}");
        let names =
            |files: &[(String, String)]| files.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&committed),
            names(&made),
            "{out}: the committed files are not the ones tsc makes: run `npm run build` in examples/browser and commit {out}"
        );
        for ((name, committed), (_, made)) in committed.iter().zip(&made) {
            assert!(
                committed == made,
                "{out}/{name} is not what tsc makes of the TypeScript today: run `npm run build` in examples/browser and commit it"
            );
        }
    }
}

/// What `request` resolves with is the response type of the request asked, at compile time:
/// each `@ts-expect-error` below must be an error, and every other line must compile.
#[test]
fn a_requests_answer_is_typed_by_the_request_type() {
    let dir = scratch("request-types");
    copy_sources(&dir);
    let (ok, output) = tsc(&dir.join("clients/ts"), &[]);
    assert!(ok, "the client library does not compile:\n{output}");
    let check = dir.join("request-types");
    std::fs::create_dir_all(&check).unwrap();
    std::fs::write(
        check.join("requests.ts"),
        r#"import { CrimsonSocket, jsonCodec, type RequestType } from "crimson-socket";

type ChatMessage = { text: string };
type ChatResponse = { text: string; from: string; at: number };
const url = "ws://127.0.0.1:1/chat";

// One request type, answered with the Down type (as the chat's): the codec decodes answers.
const chat = new CrimsonSocket<ChatMessage, ChatResponse, RequestType<ChatMessage, ChatResponse>>({
  url,
  codec: jsonCodec(),
  protocol: true,
});
export const answer: Promise<ChatResponse> = chat.request({ text: "/who" }, { timeoutMs: 1000 });
// @ts-expect-error: the answer is a ChatResponse, not a string
export const wrong: Promise<string> = chat.request({ text: "/who" });
// @ts-expect-error: not a ChatMessage
void chat.request({ body: "/who" });

// An Up union whose members are answered with different types.
type Who = { type: "who" };
type Say = { type: "say"; text: string };
type Members = { members: string[] };
type Said = { at: number };
type Event = { type: "event" };
const rooms = new CrimsonSocket<Who | Say, Event, RequestType<Who, Members> | RequestType<Say, Said>>({
  url,
  codec: jsonCodec(),
  // Answers are not Down messages: a codec for them is required.
  responses: jsonCodec<never, Members | Said>(),
  protocol: true,
});
export const members: Promise<Members> = rooms.request({ type: "who" });
export const said: Promise<Said> = rooms.request({ type: "say", text: "hi" });
// @ts-expect-error: a Who is answered with Members, not Said
export const notSaid: Promise<Said> = rooms.request({ type: "who" });

// @ts-expect-error: answers that are not Down messages need a `responses` codec
new CrimsonSocket<Who | Say, Event, RequestType<Who, Members>>({ url, codec: jsonCodec() });

// A socket without request types has no request to make.
const plain = new CrimsonSocket<ChatMessage, ChatResponse>({ url, codec: jsonCodec() });
// @ts-expect-error: no RequestType given
void plain.request({ text: "/who" });

// The server's requests: Down messages, answered with their response type.
const answering = new CrimsonSocket<ChatMessage, ChatResponse, never, RequestType<ChatResponse, ChatMessage>>({
  url,
  codec: jsonCodec(),
  protocol: true,
});
answering.onRequest((request) => ({ text: `seen ${request.from}` }));
// @ts-expect-error: the answer must be a ChatMessage
answering.onRequest(() => ({ body: "no" }));
"#,
    )
    .unwrap();
    std::fs::write(
        check.join("tsconfig.json"),
        r#"{ "compilerOptions": { "strict": true, "noEmit": true, "target": "es2022",
             "module": "es2022", "moduleResolution": "bundler", "lib": ["es2022", "dom"],
             "types": [], "paths": { "crimson-socket": ["../clients/ts/dist/index.d.ts"] } },
             "files": ["requests.ts"] }"#,
    )
    .unwrap();
    let (ok, output) = tsc(&check, &[]);
    assert!(ok, "the request types do not hold:\n{output}");
}

#[test]
fn chat_server_serves_every_script_the_page_loads() {
    // Every compiled module but the type-only ones (`import type` is erased, so the page never
    // asks for them) has a route, and each route serves the committed file.
    let root = root();
    let mut expected = Vec::new();
    for (name, contents) in files_under(&root.join("examples/static/js")) {
        if !name.starts_with("generated/") {
            expected.push((format!("/js/{name}"), contents));
        }
    }
    for (name, contents) in files_under(&root.join("clients/ts/dist")) {
        if name.ends_with(".js") {
            expected.push((format!("/js/crimson-socket/{name}"), contents));
        }
    }
    expected.sort();
    let mut served: Vec<(String, String)> = crimson_examples::PAGE_SCRIPTS
        .iter()
        .map(|&(path, body)| (path.to_owned(), body.to_owned()))
        .collect();
    served.sort();
    let paths = |files: &[(String, String)]| files.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(
        paths(&served),
        paths(&expected),
        "crimson_examples::PAGE_SCRIPTS and the compiled files differ"
    );
    assert!(
        served == expected,
        "a served script is not the file on disk"
    );
    for (path, body) in &served {
        assert!(
            !body.contains("from \"./generated/"),
            "{path} imports a type-only module at run time (use `import type`)"
        );
    }
}

/// What needs ts-rs: the definitions themselves, and what a change on the Rust side does to
/// the TypeScript build.
#[cfg(feature = "ts")]
mod generated {
    use super::*;
    use crimson_examples::typescript;
    use serde::Serialize;
    use ts_rs::TS;

    #[test]
    fn the_committed_definitions_are_what_the_rust_messages_make() {
        let problems = typescript::stale(&typescript::dir()).unwrap();
        assert!(
            problems.is_empty(),
            "examples/{}: {}; run `{}` and commit the result",
            typescript::DIR,
            problems.join("; "),
            typescript::COMMAND
        );
    }

    // `ChatResponse` and `ChatMessage` as a server change would leave them.

    /// `from` renamed on the wire, the commonest silent break.
    #[derive(Serialize, TS)]
    #[ts(rename = "ChatResponse")]
    #[allow(dead_code)]
    struct ChatResponseFromRenamed {
        text: String,
        #[serde(rename = "sender")]
        from: String,
        #[ts(type = "number")]
        at: u64,
    }

    /// `at` now a timestamp string: the page's `new Date(message.at)` still compiles, so only
    /// the page's field checks can catch it.
    #[derive(Serialize, TS)]
    #[ts(rename = "ChatResponse")]
    #[allow(dead_code)]
    struct ChatResponseAtRetyped {
        text: String,
        from: String,
        at: String,
    }

    /// What the page sends, with `text` renamed to `body` for every field.
    #[derive(Serialize, TS)]
    #[ts(rename = "ChatMessage")]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct ChatMessageTextRenamed {
        #[serde(rename = "body")]
        text: String,
    }

    /// A copy of the sources with the client library compiled (the page type-checks against
    /// its declarations), and the page checked as it is: the control for what follows.
    fn page_copy(name: &str) -> PathBuf {
        let dir = scratch(name);
        copy_sources(&dir);
        let (ok, output) = tsc(&dir.join("clients/ts"), &[]);
        assert!(ok, "the client library does not compile:\n{output}");
        let (ok, output) = tsc(&dir.join("examples/browser"), &["--noEmit"]);
        assert!(ok, "the unchanged copy does not compile:\n{output}");
        dir
    }

    /// Replaces a generated definition in the copy with `T`'s, as ts-rs writes it, and returns
    /// what tsc says of the page then (it must fail).
    fn page_with<T: TS + 'static>(dir: &Path) -> String {
        let (file, contents) = typescript::file::<T>();
        let path = dir.join("examples").join(typescript::DIR).join(&file);
        assert!(path.exists(), "{file} is not a generated definition");
        let original = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, contents).unwrap();
        let (ok, output) = tsc(&dir.join("examples/browser"), &["--noEmit"]);
        std::fs::write(&path, original).unwrap();
        assert!(
            !ok,
            "tsc accepted the page with a changed {file}:\n{output}"
        );
        output
    }

    fn assert_has(output: &str, expected: &str) {
        assert!(
            output.contains(expected),
            "tsc did not say {expected:?}; it said:\n{output}"
        );
    }

    #[test]
    fn a_field_renamed_or_retyped_in_a_rust_message_breaks_the_pages_build() {
        let dir = page_copy("changed-fields");

        let output = page_with::<ChatResponseFromRenamed>(&dir);
        assert_has(&output, "ts/chat.ts(");
        assert_has(
            &output,
            "error TS2353: Object literal may only specify known properties, and 'from' does not exist in type 'Fields<ChatResponse>'.",
        );

        let output = page_with::<ChatResponseAtRetyped>(&dir);
        assert_has(
            &output,
            "error TS2322: Type 'Check<number>' is not assignable to type 'Check<string>'.",
        );

        let output = page_with::<ChatMessageTextRenamed>(&dir);
        assert_has(
            &output,
            "error TS2353: Object literal may only specify known properties, and 'text' does not exist in type 'ChatMessage'.",
        );
    }

    // The shapes a message may take, and serde's JSON for each: ts-rs's `serde-compat` must
    // describe that JSON, or a page typed by it is wrong at run time.

    #[derive(Serialize, TS)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Shapes {
        user_name: String,
        #[serde(rename = "nick")]
        nickname: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        status: Option<String>,
        #[ts(type = "number")]
        joined_at: u64,
        count: u32,
        ratio: f64,
        tags: Vec<String>,
        event: Event,
        color: Color,
        #[serde(skip)]
        secret: String,
    }

    #[derive(Serialize, TS)]
    #[serde(tag = "type", rename_all = "snake_case")]
    #[allow(dead_code)]
    enum Event {
        Joined { room: String },
        Left,
        Renamed { from: String, to: String },
    }

    #[derive(Serialize, TS)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code)]
    enum Color {
        Red,
        Green,
    }

    /// A pitfall, pinned: a `u64` without `#[ts(type = "number")]` is a `bigint` in
    /// TypeScript, and JSON.parse never makes one.
    #[derive(Serialize, TS)]
    #[allow(dead_code)]
    struct BigintPitfall {
        at: u64,
    }

    /// A pitfall, pinned: `skip_serializing_if` without `default` leaves the field required in
    /// TypeScript, though serde omits it.
    #[derive(Serialize, TS)]
    #[allow(dead_code)]
    struct SkipPitfall {
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    }

    /// Writes the definitions and a module that gives each JSON value its type; returns what
    /// tsc says of it.
    fn check_json(
        dir: &Path,
        files: &[(String, String)],
        ty: &str,
        values: &[String],
    ) -> (bool, String) {
        for (name, contents) in files {
            std::fs::write(dir.join(name), contents).unwrap();
        }
        let mut module = format!("import type {{ {ty} }} from \"./{ty}.js\";\n");
        for (i, value) in values.iter().enumerate() {
            module.push_str(&format!("export const value{i}: {ty} = {value};\n"));
        }
        std::fs::write(dir.join("values.ts"), module).unwrap();
        std::fs::write(
            dir.join("tsconfig.json"),
            r#"{ "compilerOptions": { "strict": true, "noEmit": true, "target": "es2022",
                 "module": "es2022", "moduleResolution": "bundler", "types": [] },
                 "files": ["values.ts"] }"#,
        )
        .unwrap();
        tsc(dir, &[])
    }

    #[test]
    fn serdes_json_type_checks_against_what_ts_rs_writes() {
        let dir = scratch("serde-shapes");
        let files = [
            typescript::file::<Shapes>(),
            typescript::file::<Event>(),
            typescript::file::<Color>(),
        ];
        // Definitions that use others import them with the `.js` a browser needs.
        assert!(
            files[0]
                .1
                .contains("import type { Event } from \"./Event.js\";"),
            "{}",
            files[0].1
        );
        let values = [
            Shapes {
                user_name: "ann".into(),
                nickname: None,
                status: None,
                joined_at: 1_700_000_000_000,
                count: 3,
                ratio: 0.5,
                tags: vec![],
                event: Event::Left,
                color: Color::Red,
                secret: "hidden".into(),
            },
            Shapes {
                user_name: "bob".into(),
                nickname: Some("b".into()),
                status: Some("away".into()),
                joined_at: 1,
                count: 0,
                ratio: -1.25,
                tags: vec!["x".into()],
                event: Event::Renamed {
                    from: "a".into(),
                    to: "b".into(),
                },
                color: Color::Green,
                secret: String::new(),
            },
            Shapes {
                user_name: String::new(),
                nickname: None,
                status: None,
                joined_at: 0,
                count: 1,
                ratio: 0.0,
                tags: vec![],
                event: Event::Joined { room: "r".into() },
                color: Color::Red,
                secret: String::new(),
            },
        ]
        .iter()
        .map(|value| serde_json::to_string_pretty(value).unwrap())
        .collect::<Vec<_>>();
        let (ok, output) = check_json(&dir, &files, "Shapes", &values);
        assert!(
            ok,
            "serde's JSON does not fit ts-rs's types:\n{}\n{output}",
            values.join("\n")
        );

        // The control: a JSON value with a field the type does not have fails.
        let (ok, output) = check_json(
            &dir,
            &files,
            "Shapes",
            &[values[0].replace("\"userName\"", "\"user_name\"")],
        );
        assert!(!ok, "tsc accepted a misnamed field:\n{output}");
        assert_has(&output, "'\"user_name\"' does not exist in type 'Shapes'");

        let dir = scratch("serde-pitfalls");
        let json = serde_json::to_string(&BigintPitfall { at: 5 }).unwrap();
        let (ok, output) = check_json(
            &dir,
            &[typescript::file::<BigintPitfall>()],
            "BigintPitfall",
            &[json],
        );
        assert!(
            !ok,
            "ts-rs's defaults changed; update the notes in examples/src/typescript.rs:\n{output}"
        );
        assert_has(&output, "Type 'number' is not assignable to type 'bigint'.");
        let json = serde_json::to_string(&SkipPitfall { note: None }).unwrap();
        assert_eq!(json, "{}");
        let (ok, output) = check_json(
            &dir,
            &[typescript::file::<SkipPitfall>()],
            "SkipPitfall",
            &[json],
        );
        assert!(
            !ok,
            "ts-rs's defaults changed; update the notes in examples/src/typescript.rs:\n{output}"
        );
        assert_has(
            &output,
            "Property 'note' is missing in type '{}' but required in type 'SkipPitfall'.",
        );
    }
}
