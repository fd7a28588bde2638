//! What a stream's history costs in memory, measured with a counting allocator: a stream
//! that keeps 1,000 publications of 256 bytes holds their payloads and about 64 bytes more
//! each (BENCHMARKS.md quotes the figure this prints).
#![cfg(feature = "server")]

use std::time::Duration;

use crimson_core::cluster::{History, LocalCluster, Target};
use crimson_core::Payload;
use peak_alloc::PeakAlloc;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// Live heap bytes after publishing `count` payloads of `size` bytes into one stream that
/// keeps `keep`, above what was live before (no session: the history alone holds them).
fn kept(keep: usize, count: usize, size: usize) -> usize {
    let cluster = LocalCluster::builder()
        .history(History::new(keep, Duration::MAX))
        .build();
    // The stream itself, made by its first publication.
    cluster.deliver(&Payload::Text("0".into()), &Target::All);
    let before = ALLOC.current_usage();
    for n in 0..count {
        let text = format!("{n:0size$}");
        cluster.deliver(&Payload::Text(text.into()), &Target::All);
    }
    let used = ALLOC.current_usage().saturating_sub(before);
    drop(cluster);
    used
}

#[test]
fn a_stream_holds_its_payloads_and_about_64_bytes_each() {
    let used = kept(1000, 1000, 256);
    let per = used as f64 / 1000.0;
    println!("history of 1,000 × 256 B: {used} bytes ({per:.0} per publication)");
    // A payload's bytes (256), its shared buffer's header, and the entry (64 bytes).
    assert!(per >= 256.0, "{per}");
    assert!(
        per <= 256.0 + 64.0 + 96.0,
        "{per} bytes per kept publication"
    );
    // Past `keep`, the oldest are let go: 10,000 published, 1,000 kept, about the same.
    let trimmed = kept(1000, 10_000, 256);
    assert!(
        trimmed <= used + used / 4,
        "{trimmed} bytes with 10,000 published against {used} with 1,000"
    );
}
