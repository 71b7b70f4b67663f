"""Draws a kvmscope Perfetto export the way Perfetto UI lays out its track model (one row
per thread track under its process, slices stacked by depth, instants as ticks, counter
tracks as step plots), as an SVG, for docs where Perfetto UI cannot be reached. Decodes the
file with Perfetto's own protobuf definitions (PyPI `perfetto`).

Usage: perfetto_preview.py IN.pftrace OUT.svg [START_NS DURATION_NS]
"""

import collections
import hashlib
import sys

from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac"]


def colour(name):
    return PALETTE[int(hashlib.md5(name.encode()).hexdigest(), 16) % len(PALETTE)]


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def main():
    src, dst = sys.argv[1], sys.argv[2]
    trace = pb.Trace.FromString(open(src, "rb").read())
    names, tracks = {}, {}
    slices = collections.defaultdict(list)
    instants = collections.defaultdict(list)
    counters = collections.defaultdict(list)
    stacks = collections.defaultdict(list)
    t_min, t_max = None, 0
    for p in trace.packet:
        for n in p.interned_data.event_names:
            names[n.iid] = n.name
        if p.HasField("track_descriptor"):
            d = p.track_descriptor
            if d.HasField("process"):
                tracks[d.uuid] = ("process", d.process.process_name, d.process.pid, 0)
            elif d.HasField("thread"):
                tracks[d.uuid] = ("thread", d.thread.thread_name, d.thread.pid, d.thread.tid)
            else:
                tracks[d.uuid] = ("counter", d.name, 1 << 30, d.uuid)
            continue
        if not p.HasField("track_event"):
            continue
        e, ts = p.track_event, p.timestamp
        t_min = ts if t_min is None else min(t_min, ts)
        t_max = max(t_max, ts)
        if e.type == pb.TrackEvent.TYPE_SLICE_BEGIN:
            stacks[e.track_uuid].append((ts, names.get(e.name_iid, "?")))
        elif e.type == pb.TrackEvent.TYPE_SLICE_END and stacks[e.track_uuid]:
            start, name = stacks[e.track_uuid].pop()
            slices[e.track_uuid].append((start, ts, name, len(stacks[e.track_uuid])))
        elif e.type == pb.TrackEvent.TYPE_INSTANT:
            instants[e.track_uuid].append((ts, names.get(e.name_iid, "?")))
        elif e.type == pb.TrackEvent.TYPE_COUNTER:
            counters[e.track_uuid].append((ts, e.double_counter_value))
    start = int(sys.argv[3]) if len(sys.argv) > 3 else (t_min or 0)
    span = int(sys.argv[4]) if len(sys.argv) > 4 else max(1, t_max - start)
    W, left, row = 1100, 220, 16
    x = lambda t: left + (t - start) / span * (W - left - 10)
    out, y = [], 30
    order = sorted((v[2], v[0] != "process", v[3], u) for u, v in tracks.items())
    for _, _, _, u in order:
        kind, name, pid, tid = tracks[u]
        if kind == "process":
            out.append(f'<rect x="0" y="{y}" width="{W}" height="20" fill="#e8eaed"/>'
                       f'<text x="6" y="{y+14}" font-weight="bold">{esc(name)} (pid {pid})</text>')
            y += 22
            continue
        if kind == "thread":
            depth = 1 + max([s[3] for s in slices[u]] or [0])
            h = row * depth + 8
            out.append(f'<text x="16" y="{y+12}">{esc(name)} {tid}</text>')
            for a, b, n, d in slices[u]:
                if b < start or a > start + span:
                    continue
                xa, xb = x(max(a, start)), x(min(b, start + span))
                out.append(f'<rect x="{xa:.1f}" y="{y+d*row}" width="{max(xb-xa, 0.8):.1f}" height="{row-2}" '
                           f'fill="{colour(n)}"><title>{esc(n)}</title></rect>')
                if xb - xa > 7 * len(n):
                    out.append(f'<text x="{xa+3:.1f}" y="{y+d*row+11}" font-size="10" fill="#fff">{esc(n)}</text>')
            for t, n in instants[u]:
                if start <= t <= start + span:
                    out.append(f'<path d="M{x(t):.1f} {y+h-8}l-3 6h6z" fill="#333"><title>{esc(n)}</title></path>')
            y += h + 4
        else:
            before = [v for t, v in counters[u] if t < start]
            pts = [(start, before[-1] if before else 0.0)]
            pts += [(t, v) for t, v in counters[u] if start <= t <= start + span]
            top = max(v for _, v in pts)
            if top == 0:
                continue
            d = f"M{left} {y+28-pts[0][1]/top*24:.1f}"
            for t, v in pts[1:]:
                d += f"H{x(t):.1f}V{y+28-v/top*24:.1f}"
            d += f"H{x(start + span):.1f}"
            out.append(f'<text x="16" y="{y+16}">{esc(name)}</text>'
                       f'<text x="{left-6}" y="{y+8}" text-anchor="end" font-size="10">{top:.0f}</text>'
                       f'<path d="{d}" fill="none" stroke="#4e79a7"/>')
            y += 34
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{y+10}" font-family="DejaVu Sans,sans-serif" font-size="12">'
            f'<rect width="{W}" height="{y+10}" fill="#fff"/>'
            f'<text x="6" y="18" font-size="13">{esc(src.split("/")[-1])}: {span/1e6:.3f} ms from {start/1e9:.6f} s '
            f'(rows as Perfetto UI shows the tracks)</text>')
    open(dst, "w").write(head + "".join(out) + "</svg>\n")


main()
