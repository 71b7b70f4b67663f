"""Reads a kvmscope Perfetto export back with Perfetto's own protobuf definitions (PyPI
`perfetto`: perfetto.protos.perfetto.trace.perfetto_trace_pb2) and checks it against the
report (`kvmscope report --json`) and the Chrome JSON export of the same input:

* depth-0 slices per vCPU thread and name equal the exits the report counts per reason and
  thread (exits.rows[].per_thread);
* timestamps are monotonic on every track; slices nest (every end closes an open slice);
* the exits/s counters add up to the exit counts; the per-CPU tracks have one slice per
  exit, per reason as the report counts them;
* the Chrome JSON parses and has the same slices (thread, start, end, name, depth).

Usage: perfetto_readback.py OUT.pftrace OUT.json REPORT.json COUNTER_WINDOW_NS
Prints a one-line JSON summary; exits 1 with the reasons on mismatch.
"""

import collections
import json
import sys

from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb


def fail(msgs):
    for m in msgs:
        print("MISMATCH:", m)
    sys.exit(1)


def perfetto_slices(path):
    trace = pb.Trace.FromString(open(path, "rb").read())
    names, threads, counters, cpus = {}, {}, {}, {}
    last_ts = {}
    stacks = collections.defaultdict(list)
    slices, cpu_slices, instants, counter_sum, errors = [], [], 0, collections.Counter(), []
    for p in trace.packet:
        if p.HasField("interned_data"):
            for n in p.interned_data.event_names:
                names[n.iid] = n.name
        if p.HasField("track_descriptor"):
            d = p.track_descriptor
            if d.HasField("thread"):
                threads[d.uuid] = d.thread.tid
            elif d.HasField("counter"):
                counters[d.uuid] = d.name
            elif d.name.startswith("CPU "):
                cpus[d.uuid] = int(d.name[4:])
            continue
        if not p.HasField("track_event"):
            continue
        e = p.track_event
        u = e.track_uuid
        if p.timestamp < last_ts.get(u, 0):
            errors.append(f"track {u}: timestamp {p.timestamp} after {last_ts[u]}")
        last_ts[u] = p.timestamp
        if e.type == pb.TrackEvent.TYPE_SLICE_BEGIN:
            stacks[u].append((p.timestamp, names[e.name_iid]))
        elif e.type == pb.TrackEvent.TYPE_SLICE_END:
            if not stacks[u]:
                errors.append(f"track {u}: end at {p.timestamp} with no open slice")
                continue
            start, name = stacks[u].pop()
            if u in threads:
                slices.append((threads[u], start, p.timestamp, name, len(stacks[u])))
            else:
                cpu_slices.append((cpus[u], start, p.timestamp, name, len(stacks[u])))
        elif e.type == pb.TrackEvent.TYPE_INSTANT:
            instants += 1
            assert e.name_iid in names
        elif e.type == pb.TrackEvent.TYPE_COUNTER:
            counter_sum[counters[u]] += e.double_counter_value
    for u, s in stacks.items():
        if s:
            errors.append(f"track {u}: {len(s)} slices never ended")
    return slices, cpu_slices, instants, counter_sum, errors, len(trace.packet)


CPU_PID = 0x7FFFFFF0


def chrome_slices(path):
    doc = json.load(open(path))
    stacks = collections.defaultdict(list)
    last = {}
    slices, cpu_slices, errors = [], [], []
    for e in doc["traceEvents"]:
        ph = e["ph"]
        if ph == "M":
            continue
        key = (e["pid"], e["tid"], e.get("name") if ph == "C" else None)
        ts = round(float(e["ts"]) * 1000)
        if ts < last.get(key, 0):
            errors.append(f"chrome {key}: ts {ts} after {last[key]}")
        last[key] = ts
        k = (e["pid"], e["tid"])
        if ph == "B":
            stacks[k].append((ts, e["name"]))
        elif ph == "E":
            start, name = stacks[k].pop()
            (cpu_slices if e["pid"] == CPU_PID else slices).append((e["tid"], start, ts, name, len(stacks[k])))
    return slices, cpu_slices, errors


def main():
    pftrace, chrome, report_path, window_ns = sys.argv[1:5]
    window_s = int(window_ns) / 1e9
    report = json.load(open(report_path))
    slices, cpu_slices, instants, counter_sum, errors, packets = perfetto_slices(pftrace)
    got = collections.Counter((tid, name) for tid, _, _, name, depth in slices if depth == 0)
    want = collections.Counter()
    for row in (report.get("exits") or {}).get("rows", []):
        for tid, n in row["per_thread"]:
            want[(tid, row["reason"])] += n
    if got != want:
        errors.append(f"exit slices per (tid, reason) {dict(got)} != report {dict(want)}")
    for row in (report.get("exits") or {}).get("rows", []):
        total = counter_sum.get("exits/s " + row["reason"], 0.0) * window_s
        if abs(total - row["count"]) > 1e-6 * max(1, row["count"]):
            errors.append(f"exits/s {row['reason']} counters add up to {total}, report {row['count']}")
    by_reason = collections.Counter(name for _, _, _, name, _ in cpu_slices)
    want_reason = collections.Counter({r["reason"]: r["count"] for r in (report.get("exits") or {}).get("rows", [])})
    if by_reason != want_reason:
        errors.append(f"CPU-track exit slices per reason {dict(by_reason)} != report {dict(want_reason)}")
    cslices, ccpu, cerrors = chrome_slices(chrome)
    errors += cerrors
    if sorted(cslices) != sorted(slices):
        errors.append(f"chrome JSON slices differ: {len(cslices)} vs {len(slices)} in Perfetto")
    if sorted(ccpu) != sorted(cpu_slices):
        errors.append(f"chrome JSON CPU slices differ: {len(ccpu)} vs {len(cpu_slices)} in Perfetto")
    if errors:
        fail(errors)
    print(json.dumps({
        "packets": packets,
        "slices": len(slices),
        "exit_slices": sum(got.values()),
        "nested": sum(1 for s in slices if s[4] > 0),
        "cpu_slices": len(cpu_slices),
        "instants": instants,
    }))


main()
