#!/usr/bin/env python3
"""Summarises Autobahn|Testsuite reports and checks them against Crimson's bar.

    autobahn-summary.py LABEL INDEX_JSON [LABEL INDEX_JSON ...]

For each report (the suite's `index.json`, one agent each) it prints, per top-level section,
how many cases were OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED and FAILED, then every case
that is not OK. It exits 1 when a case FAILED or did worse than the bar, which is at least
what a bare tokio-tungstenite 0.29 peer scores, plus permessage-deflate:

- sections 1-10: OK, except 6.4.3 and 6.4.4, where NON-STRICT is allowed (tungstenite checks
  UTF-8 once a whole fragment is in; Crimson checks it as bytes arrive and scores OK), and
  INFORMATIONAL where the suite only informs (7.1.6, 7.13.1, 7.13.2);
- sections 12-13 (permessage-deflate): OK, every case (UNIMPLEMENTED fails);
- the closing behaviour: OK everywhere (INFORMATIONAL where the case is). A close behaviour
  of FAILED counts as a failure; WRONG CODE, UNCLEAN and FAILED BY CLIENT as worse than the
  bar.
"""

import json
import os
import sys

OUTCOMES = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
# Cases a bare tokio-tungstenite peer gets NON-STRICT on.
BASELINE_NON_STRICT = {"6.4.3", "6.4.4"}
# Sections of permessage-deflate cases: every one must be OK.
DEFLATE_SECTIONS = {"12", "13"}


def case_key(case_id):
    return tuple(int(part) for part in case_id.split("."))


def details(index_path, case):
    """The case's description and what the suite saw, from its per-case JSON report."""
    report = case.get("reportfile", "")
    path = os.path.join(os.path.dirname(index_path), report.replace(".html", ".json"))
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return []
    lines = []
    for key in ["description", "expectation", "result", "resultClose"]:
        value = " ".join(str(data.get(key, "")).split())
        if value:
            lines.append(f"{key}: {value}")
    return lines


def verdict(case_id, case):
    """Why the case is worse than the bar, or None."""
    section = case_id.split(".")[0]
    behavior = case.get("behavior")
    close = case.get("behaviorClose")
    if behavior == "FAILED" or close == "FAILED":
        return "FAILED"
    if close not in ("OK", "INFORMATIONAL"):
        return f"closing behaviour {close}, worse than the bar"
    if section in DEFLATE_SECTIONS:
        return None if behavior == "OK" else f"{behavior} (permessage-deflate must be OK)"
    if behavior == "OK" or behavior == "INFORMATIONAL":
        return None
    if behavior == "NON-STRICT" and case_id in BASELINE_NON_STRICT:
        return None
    return f"{behavior}, worse than the bar"


def summarise(label, index_path):
    """Prints one report; returns (number of bad cases, case ids)."""
    try:
        with open(index_path) as f:
            index = json.load(f)
    except (OSError, ValueError) as err:
        print(f"\n{label}: no report at {index_path}: {err}")
        return 1, set()
    if len(index) != 1:
        print(f"\n{label}: expected one agent in {index_path}, found {sorted(index)}")
        return 1, set()
    (agent, cases), = index.items()
    print(f"\n{label}: agent {agent!r}, {len(cases)} cases  ({index_path})")

    sections = {}
    for case_id, case in cases.items():
        counts = sections.setdefault(case_id.split(".")[0], dict.fromkeys(OUTCOMES + ["other"], 0))
        behavior = case.get("behavior")
        counts[behavior if behavior in OUTCOMES else "other"] += 1
    columns = OUTCOMES + (["other"] if any(c["other"] for c in sections.values()) else [])
    widths = [max(len(c), 5) for c in columns]
    print("  section  " + "  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    totals = dict.fromkeys(columns, 0)
    for section in sorted(sections, key=int):
        counts = sections[section]
        note = "  (permessage-deflate)" if section in DEFLATE_SECTIONS else ""
        print(f"  {section:>7}  " + "  ".join(str(counts[c]).rjust(w) for c, w in zip(columns, widths)) + note)
        for c in columns:
            totals[c] += counts[c]
    print("  " + "total".rjust(7) + "  " + "  ".join(str(totals[c]).rjust(w) for c, w in zip(columns, widths)))

    bad = 0
    for case_id in sorted(cases, key=case_key):
        case = cases[case_id]
        behavior, close = case.get("behavior"), case.get("behaviorClose")
        problem = verdict(case_id, case)
        if problem is None and (behavior == "OK" or case_id.split(".")[0] in DEFLATE_SECTIONS):
            continue
        if problem:
            bad += 1
        mark = "!!" if problem else "  "
        code = case.get("remoteCloseCode")
        print(f"  {mark} {case_id:<9} {behavior} (close: {close}, remote close code {code})"
              + (f"  <- {problem}" if problem else "  (allowed)"))
        if problem:
            for line in details(index_path, case):
                print(f"       {line}")
    if bad:
        print(f"  {bad} case(s) FAILED or worse than the bar")
    else:
        print("  no case worse than the bar")
    return bad, set(cases)


def main(argv):
    if len(argv) < 2 or len(argv) % 2:
        print(__doc__, file=sys.stderr)
        return 2
    bad = 0
    case_sets = []
    for label, path in zip(argv[0::2], argv[1::2]):
        report_bad, ids = summarise(label, path)
        bad += report_bad
        case_sets.append((label, ids))
    for label, ids in case_sets[1:]:
        first_label, first = case_sets[0]
        if ids and first and ids != first:
            print(f"\n{label} ran {len(ids)} cases, {first_label} {len(first)}: the case sets differ")
            bad += 1
    print()
    print("autobahn: FAILED" if bad else "autobahn: passed (sections 1-13, nothing worse than the bar)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
