#!/usr/bin/env python3
"""Print the slowest tests of a nextest JUnit report: slowest.py REPORT [N]."""
import sys
import xml.etree.ElementTree as ET


def main() -> int:
    path = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        print(f"slowest tests: no report ({e})")
        return 0
    cases = []
    for suite in root.iter("testsuite"):
        for case in suite.iter("testcase"):
            cases.append((float(case.get("time", "0")), suite.get("name", ""), case.get("name", "")))
    cases.sort(reverse=True)
    total = sum(c[0] for c in cases)
    print(f"\nslowest {min(n, len(cases))} of {len(cases)} tests ({total:.0f} s of test time in all):")
    for secs, suite, name in cases[:n]:
        print(f"{secs:8.1f} s  {suite} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
