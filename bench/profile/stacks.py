#!/usr/bin/env python3
"""Sorts perf samples of a Canopy run by what is on their stack, as µs of CPU per transaction.

Record system-wide with DWARF stacks during a sysbench run, then run this on `perf script`'s output:

    perf record -a --call-graph dwarf,16384 -F 250 -o perf.data -- sleep 6
    perf script -i perf.data -F comm,tid,ip,sym > stacks.txt
    bench/profile/stacks.py [--seconds 6] [--hz 250] stacks.txt TPS [stacks2.txt TPS2 ...]

Each sample goes to the first category below whose pattern is on its stack (or to its thread's name); with several
files the columns sit side by side (redundancy 1 beside redundancy 2, say). A sample is 1/HZ s of one CPU, so a
category's µs per transaction is samples / HZ * 1e6 / (TPS * SECONDS); with a few thousand samples each figure is
good to about 10-15 %.
"""
import argparse
import collections

# (label, any of these function names on the stack), first match wins.
CATEGORIES = [
    ("fsync: group commit round (master WAL)", ["sync_wal"]),
    ("fsync: SQLite checkpoint", ["walCheckpoint"]),
    ("replica: taking entries (term check, hold, journal)", ["apply_replicated", "handler::replicate"]),
    ("master: shipping the entry (replica round trip)", ["Replicator>::ship"]),
    ("master: session changeset", ["Session::changeset", "Session::start"]),
    ("master: PRAGMA", ["sqlite3Pragma"]),
    ("master: WAL frames at COMMIT", ["sqlite3WalFrames", "walWriteOneFrame"]),
    ("master: preparing statements", ["sqlite3LockAndPrepare", "sqlite3Reprepare"]),
    ("master: executing the statement", ["execute_now"]),
    ("group commit: waiting", ["Flusher::wait"]),
    ("RPC: reading frames", ["read_frame_sync"]),
    ("RPC: writing frames", ["write_frame_sync"]),
]


def samples(path):
    """(thread name, stack function names) per sample of `perf script -F comm,tid,ip,sym` output."""
    current = None
    for line in open(path, errors="replace"):
        if not line.strip():
            if current:
                yield current
            current = None
        elif not line[0].isspace():
            current = (line.split()[0], [])
        elif current:
            parts = line.split(None, 1)
            if len(parts) == 2:
                current[1].append(parts[1].strip())
    if current:
        yield current


def category(thread, stack):
    if thread == "swapper":
        return "idle"
    for label, patterns in CATEGORIES:
        if any(p in frame for frame in stack for p in patterns):
            return label
    return f"other: thread {thread}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of the recording (perf's sleep)")
    parser.add_argument("--hz", type=float, default=250.0, help="perf record's -F")
    parser.add_argument("runs", nargs="+", metavar="FILE TPS", help="perf script output and the run's tps, in pairs")
    args = parser.parse_args()
    if len(args.runs) % 2:
        parser.error("each perf script file needs the tps of its run after it")
    columns = []
    for path, tps in zip(args.runs[0::2], args.runs[1::2]):
        counts = collections.Counter(category(t, s) for t, s in samples(path))
        columns.append({k: n / args.hz * 1e6 / (float(tps) * args.seconds) for k, n in counts.items()})
    labels = sorted(set().union(*columns), key=lambda k: -max(c.get(k, 0) for c in columns))
    for label in labels:
        print("  ".join(f"{c.get(label, 0):7.1f}" for c in columns), "  ", label)
    print("  ".join(f"{sum(v for k, v in c.items() if k != 'idle'):7.1f}" for c in columns), "   total (not idle)")


if __name__ == "__main__":
    main()
