#!/usr/bin/env python3
"""Prints crimson/direct median-time ratios from the last `cargo bench --bench codecs` run."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
rows = []
for group in sorted(p for p in root.iterdir() if p.is_dir() and p.name.endswith(("-encode", "-decode"))):
    med = {}
    for side in ("direct", "crimson"):
        est = group / side / "new" / "estimates.json"
        if not est.exists():
            break
        med[side] = json.loads(est.read_text())["median"]["point_estimate"]
    if len(med) == 2:
        rows.append((group.name, med["direct"], med["crimson"], med["crimson"] / med["direct"]))

if not rows:
    sys.exit(f"no codec benchmark results under {root}: run `cargo bench -p crimson-core --all-features --bench codecs` first")
print("| codec/op | direct (ns) | crimson (ns) | ratio |")
print("|---|---|---|---|")
for name, direct, crimson, ratio in rows:
    print(f"| {name} | {direct:.1f} | {crimson:.1f} | {ratio:.3f} |")
