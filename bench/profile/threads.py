#!/usr/bin/env python3
"""CPU time and context switches of every Canopy server thread over a window, summed by node role and thread name.

Usage: bench/profile/threads.py SECONDS [TRANSACTIONS_PER_SECOND]

Reads /proc/<pid>/task/<tid>/stat and status of every process started as `canopy server --data-dir DIR` at the
start and the end of the window; a node whose data directory's name starts with `leaf` counts as a leaf, any other
as an aggregator. With the throughput of the run (sysbench's tps) it also prints µs and context switches per
transaction. Used to split an insert's CPU between the aggregator, the leaves' connection threads, the replica's
apply thread and the fsync helpers (docs/benchmarks.md).
"""
import os
import re
import sys
import time


def snapshot():
    threads = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline").read().split("\0")
        except OSError:
            continue
        if "server" not in cmd or "--data-dir" not in cmd:
            continue
        data_dir = cmd[cmd.index("--data-dir") + 1]
        role = "leaf" if os.path.basename(data_dir.rstrip("/")).startswith("leaf") else "aggregator"
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                stat = open(f"/proc/{pid}/task/{tid}/stat").read()
                status = open(f"/proc/{pid}/task/{tid}/status").read()
            except OSError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks = int(fields[11]) + int(fields[12])  # utime + stime
            switches = sum(int(n) for n in re.findall(r"ctxt_switches:\s+(\d+)", status))
            threads[(pid, tid)] = (role, name, ticks, switches)
    return threads


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    seconds = float(sys.argv[1])
    tps = float(sys.argv[2]) if len(sys.argv) == 3 else None
    before = snapshot()
    time.sleep(seconds)
    after = snapshot()
    totals = {}
    for key, (role, name, ticks, switches) in after.items():
        ticks0, switches0 = before[key][2:] if key in before else (0, 0)
        total = totals.setdefault((role, name), [0, 0])
        total[0] += ticks - ticks0
        total[1] += switches - switches0
    hz = os.sysconf("SC_CLK_TCK")
    for (role, name), (ticks, switches) in sorted(totals.items()):
        ms = ticks * 1000 / hz
        line = f"{role:10} {name:18} cpu {ms:8.0f} ms  context switches {switches:8}"
        if tps:
            transactions = tps * seconds
            line += f"  | {ms * 1000 / transactions:7.1f} µs/tx {switches / transactions:6.2f} switches/tx"
        print(line)


if __name__ == "__main__":
    main()
