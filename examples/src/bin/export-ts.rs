//! Writes the TypeScript definitions of the chat's JSON messages (`ChatMessage`,
//! `ChatResponse`) to `examples/browser/ts/generated/`, where the chat page imports them.
//!
//! `cargo run -p crimson-examples --features ts --bin export-ts [-- --check]`: with `--check`
//! it writes nothing and fails when the committed files are not what the Rust types make.

use crimson_examples::typescript;

const USAGE: &str = "\
usage: export-ts [--check]

Writes the TypeScript definitions of the chat's messages (made by ts-rs from the Rust
types) to examples/browser/ts/generated/.

  --check   write nothing; fail when the files there are not current
  --help    print this and exit
";

fn main() -> std::process::ExitCode {
    if crimson_examples::help(USAGE) {
        return std::process::ExitCode::SUCCESS;
    }
    let dir = typescript::dir();
    if crimson_examples::flag("check") {
        return match typescript::stale(&dir) {
            Ok(problems) if problems.is_empty() => {
                println!("{} is current", dir.display());
                std::process::ExitCode::SUCCESS
            }
            Ok(problems) => {
                for problem in problems {
                    eprintln!("export-ts: {problem}");
                }
                eprintln!("export-ts: run `{}`", typescript::COMMAND);
                std::process::ExitCode::FAILURE
            }
            Err(err) => {
                eprintln!("export-ts: cannot read {}: {err}", dir.display());
                std::process::ExitCode::FAILURE
            }
        };
    }
    match typescript::write(&dir) {
        Ok(written) => {
            for path in written {
                println!("wrote {}", path.display());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("export-ts: cannot write {}: {err}", dir.display());
            std::process::ExitCode::FAILURE
        }
    }
}
