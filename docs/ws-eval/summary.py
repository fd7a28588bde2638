#!/usr/bin/env python3
"""summary.py INDEX_JSON...: per-section OK/NON-STRICT/INFORMATIONAL/UNIMPLEMENTED/FAILED, then non-OK cases."""
import json, os, sys
OUT = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
def key(c): return tuple(int(p) for p in c.split("."))
for path in sys.argv[1:]:
    idx = json.load(open(path))
    for agent, cases in idx.items():
        print(f"\n== {agent}: {len(cases)} cases ({path})")
        secs = {}
        for cid, c in cases.items():
            d = secs.setdefault(cid.split(".")[0], dict.fromkeys(OUT + ["other"], 0))
            b = c.get("behavior"); d[b if b in OUT else "other"] += 1
        print("sect " + " ".join(o[:6].rjust(6) for o in OUT + ["other"]))
        for s in sorted(secs, key=int):
            print(f"{s:>4} " + " ".join(str(secs[s][o]).rjust(6) for o in OUT + ["other"]))
        for cid in sorted(cases, key=key):
            c = cases[cid]
            if c.get("behavior") == "OK" and c.get("behaviorClose") in ("OK", "INFORMATIONAL"):
                continue
            if c.get("behavior") in ("INFORMATIONAL", "UNIMPLEMENTED") and c.get("behaviorClose") in ("OK", "INFORMATIONAL", "UNIMPLEMENTED"):
                continue
            print(f"  {cid:<9} {c.get('behavior')} close={c.get('behaviorClose')} code={c.get('remoteCloseCode')} {c.get('duration')}ms")
            if "-v" in os.environ.get("SUMMARY_FLAGS", ""):
                rep = os.path.join(os.path.dirname(path), c["reportfile"].replace(".html", ".json"))
                try:
                    d = json.load(open(rep))
                    for k in ("description", "expectation", "result", "resultClose"):
                        print(f"      {k}: {' '.join(str(d.get(k,'')).split())[:300]}")
                except Exception as e:
                    print("      (no detail)", e)
