#!/usr/bin/env python3
"""Reads fio JSON output for bench/run.sh.

  report.py --one JSON RW
      one line: IOPS, mean and p99 completion latency; exits non-zero when
      fio reported an error or did no IO.
  report.py --table JSON_DIR ROUNDS TARGET...
      the table (median run of each target and workload by IOPS) and the
      ratios the goals are stated in.
"""
import json
import os
import sys

WORKLOADS = [("randread", 1), ("randread", 32), ("randwrite", 1), ("randwrite", 32)]


def load(path, rw):
    """(iops, mean clat us, p99 clat us) of the one job in a fio JSON file."""
    with open(path) as f:
        text = f.read()
    # fio may put notes before the JSON document.
    j = json.loads(text[text.index("{"):])
    job = j["jobs"][0]
    if job.get("error", 0):
        raise ValueError("fio job error %d" % job["error"])
    d = job["read" if rw == "randread" else "write"]
    if d["io_bytes"] == 0 or d["iops"] <= 0:
        raise ValueError("no IO done")
    clat = d["clat_ns"]
    return (d["iops"], clat["mean"] / 1e3, clat["percentile"]["99.000000"] / 1e3,
            job["usr_cpu"] + job["sys_cpu"])


def server_cpu(path, iops):
    """(CPU %, CPU us per IO) of the server over a run, from run.sh's .cpu
    file (ticks, ticks per second, start, end); (None, None) without one.
    The IO count is estimated as IOPS x wall time (the ramp included)."""
    try:
        with open(path) as f:
            ticks, hz, t0, t1 = f.read().split()
    except OSError:
        return (None, None)
    secs = int(ticks) / int(hz)
    wall = float(t1) - float(t0)
    return (100.0 * secs / wall, 1e6 * secs / (iops * wall))


def one(path, rw):
    try:
        iops, mean, p99, _ = load(path, rw)
    except (OSError, ValueError, KeyError) as e:
        print("error: %s" % e)
        return 1
    print("%9.0f IOPS  mean %8.1f us  p99 %8.1f us" % (iops, mean, p99))
    return 0


def table(jdir, rounds, targets):
    res, spread = {}, {}
    for t in targets:
        for rw, qd in WORKLOADS:
            runs = []
            for r in range(1, rounds + 1):
                p = os.path.join(jdir, "%s-%s-qd%d-r%d.json" % (t, rw, qd, r))
                run = load(p, rw)
                runs.append(run + server_cpu(p[:-5] + ".cpu", run[0]))
            runs.sort()
            res[t, rw, qd] = runs[(len(runs) - 1) // 2]
            spread[t, rw, qd] = (runs[0][0], runs[-1][0])

    hdr = "%-13s %-15s %9s %12s %9s %9s %9s %10s" % (
        "target", "workload", "IOPS", "mean lat us", "p99 us", "fio CPU%", "srv CPU%", "srv us/IO")
    if rounds > 1:
        hdr += "  IOPS min-max"
    print()
    print(hdr)
    for t in targets:
        for rw, qd in WORKLOADS:
            iops, mean, p99, fcpu, cpu, cpu_io = res[t, rw, qd]
            line = "%-13s %-15s %9.0f %12.1f %9.1f %9.0f" % (
                t, "%s QD%d" % (rw, qd), iops, mean, p99, fcpu)
            line += " %9s %10s" % ("-" if cpu is None else "%.0f" % cpu,
                                   "-" if cpu_io is None else "%.1f" % cpu_io)
            if rounds > 1:
                lo, hi = spread[t, rw, qd]
                line += "  %.0f-%.0f" % (lo, hi)
            print(line)
    print()

    label = {"cairn-nocrc": "crc-off"}

    def ratio(a, b, rw, qd, what, goal=None):
        if (a, rw, qd) not in res or (b, rw, qd) not in res:
            return
        i = {"IOPS": 0, "mean latency": 1, "p99 latency": 2, "server CPU per IO": 5}[what]
        if res[a, rw, qd][i] is None or res[b, rw, qd][i] is None:
            return
        r = res[a, rw, qd][i] / res[b, rw, qd][i]
        pair = "crc-on/crc-off" if b == "cairn-nocrc" else "%s/%s" % (a, label.get(b, b))
        line = "ratio %s %s QD%d %s: %.2f" % (pair, rw, qd, what, r)
        if goal:
            op, g = goal
            ok = r >= g if op == ">=" else r <= g
            line += " (goal %s %.2f%s)" % (op, g, "" if ok else ", MISSED")
        else:
            line += " (informational)"
        print(line)

    # The goals of issue 2.
    ratio("cairn", "qsd", "randread", 32, "IOPS", (">=", 1.0))
    ratio("cairn", "qsd", "randwrite", 32, "IOPS", (">=", 1.0))
    ratio("cairn", "qsd", "randwrite", 1, "mean latency", ("<=", 1.3))
    ratio("cairn", "cairn-nocrc", "randread", 32, "IOPS", (">=", 0.95))
    ratio("cairn", "cairn-nocrc", "randwrite", 32, "IOPS", (">=", 0.95))
    # Context.
    ratio("cairn", "qsd", "randread", 1, "mean latency")
    ratio("cairn", "qsd", "randwrite", 1, "p99 latency")
    ratio("cairn", "qsd", "randread", 32, "p99 latency")
    ratio("cairn", "qsd", "randwrite", 32, "p99 latency")
    ratio("cairn", "qsd", "randread", 32, "server CPU per IO")
    ratio("cairn", "qsd", "randwrite", 32, "server CPU per IO")
    ratio("cairn", "raw-io_uring", "randread", 32, "IOPS")
    ratio("cairn", "raw-io_uring", "randwrite", 32, "IOPS")
    ratio("qsd", "raw-io_uring", "randread", 32, "IOPS")
    ratio("qsd", "raw-io_uring", "randwrite", 32, "IOPS")
    ratio("cairn", "cairn-nocrc", "randread", 1, "IOPS")
    ratio("cairn", "cairn-nocrc", "randwrite", 1, "IOPS")
    ratio("cairn", "cairn-nocrc", "randread", 32, "server CPU per IO")
    ratio("cairn", "cairn-nocrc", "randwrite", 32, "server CPU per IO")
    return 0


def main(argv):
    if len(argv) == 4 and argv[1] == "--one":
        return one(argv[2], argv[3])
    if len(argv) >= 5 and argv[1] == "--table":
        return table(argv[2], int(argv[3]), argv[4:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
