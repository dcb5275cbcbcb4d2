"""Summarise `ptxas -v` output of a CUDA build log: registers, stack and spills per kernel and architecture.

usage: python .ci/ptxas_report.py build.log [--filter SUBSTRING]
"""

import argparse
import re
import subprocess

ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+)'")
USED = re.compile(r"Used (\d+) registers")
FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def demangle(names):
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True)
        return out.stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return list(names)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("--filter", default="")
    args = ap.parse_args()
    rows, current = [], None
    for line in open(args.log, errors="replace"):
        m = ENTRY.search(line)
        if m:
            current = {"kernel": m.group(1), "arch": m.group(2)}
            continue
        if current is None:
            continue
        m = FRAME.search(line)
        if m:
            current.update(stack=int(m.group(1)), spill_st=int(m.group(2)), spill_ld=int(m.group(3)))
        m = USED.search(line)
        if m:
            current["regs"] = int(m.group(1))
            rows.append(current)
            current = None
    names = demangle([r["kernel"] for r in rows])
    for r, n in zip(rows, names):
        n = n.replace("(anonymous namespace)::", "")
        r["name"] = re.sub(r"^void ", "", re.sub(r"\([^()]*\)$", "", n))
        r["args"] = n
    rows = [r for r in rows if args.filter in r["name"]]
    print("| kernel (template args) | arch | registers | stack B | spill stores B | spill loads B |")
    print("|---|---|---:|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: (r["name"], r["arch"])):
        print(f"| `{r['name']}` | {r['arch']} | {r.get('regs', '?')} | {r.get('stack', '?')} | "
              f"{r.get('spill_st', '?')} | {r.get('spill_ld', '?')} |")


if __name__ == "__main__":
    main()
