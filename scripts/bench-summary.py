#!/usr/bin/env python3
"""Tables with ratios from the JSON results `scripts/bench-peers` leaves in a directory.

Each number is the median over the rounds (with the range); ratios compare medians."""
import glob
import json
import os
import statistics
import sys

d = sys.argv[1] if len(sys.argv) > 1 else "target/bench"


def load(pattern):
    out = []
    for f in sorted(glob.glob(os.path.join(d, pattern))):
        with open(f) as fh:
            out.append(json.load(fh))
    return out


def api(pattern, scenario):
    vals = []
    for run in load(pattern):
        for r in run.get("results", []):
            if r["scenario"].split()[-1] == scenario:
                vals.append(r)
    return vals


def fmt(vals, key, unit=""):
    if not vals:
        return "—", None
    xs = [v[key] for v in vals]
    m = statistics.median(xs)
    f = ",.1f" if unit else ",.0f"
    rng = f" ({min(xs):{f}}–{max(xs):{f}})" if len(xs) > 1 else ""
    return f"{m:{f}}{unit}{rng}", m


def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "—"


rows = []
print("| scenario | Roost | PocketBase | nginx static | Roost ÷ PocketBase | Roost ÷ nginx |")
print("|---|---|---|---|---|---|")
for scenario, label in [("get-leaf", "GET leaf, req/s"), ("put", "durable PUT / PATCH, req/s"), ("mixed", "mixed 9:1, req/s")]:
    r, rm = fmt(api("roost-api-*.json", scenario), "per_second")
    p, pm = fmt(api("pocketbase-api-*.json", scenario), "per_second")
    n, nm = fmt(api("nginx-*.json", scenario), "per_second") if scenario == "get-leaf" else ("—", None)
    print(f"| {label} | {r} | {p} | {n} | {ratio(rm, pm)} | {ratio(rm, nm)} |")
    r99, rm99 = fmt(api("roost-api-*.json", scenario), "p99_ms", " ms")
    p99, pm99 = fmt(api("pocketbase-api-*.json", scenario), "p99_ms", " ms")
    print(f"| {scenario} p99 | {r99} | {p99} | | | |")

print()
print("| fan-out | Roost | peer | Roost ÷ peer |")
print("|---|---|---|---|")
for name, roost_glob, peer_glob, peer in [
    ("1 × 1,000 events/s", "roost-fanout-1x1000-*.json", "nchan-fanout-1x1000-*.json", "nchan"),
    ("1,000 × 10 events/s, 16 publishers", "roost-fanout-1000x10-*.json", "nchan-fanout-1000x10-*.json", "nchan"),
    ("1,000 × 10 events/s, 64 publishers", "roost-fanout-1000x10p64-*.json", "nchan-fanout-1000x10p64-*.json", "nchan"),
]:
    r, rm = fmt(load(roost_glob), "delivered_per_second")
    p, pm = fmt(load(peer_glob), "delivered_per_second")
    print(f"| {name} | {r} | {peer} {p} | {ratio(rm, pm)} |")
    # What the throughput costs: delivery latency, and a publish's round trip (older result
    # files have no round trip).
    for key, label in [("p50_ms", "delivery p50"), ("p99_ms", "delivery p99"), ("publish_p50_ms", "publish round trip p50")]:
        rv = [v for v in load(roost_glob) if key in v]
        pv = [v for v in load(peer_glob) if key in v]
        if rv or pv:
            print(f"| … {label} | {fmt(rv, key, ' ms')[0]} | {peer} {fmt(pv, key, ' ms')[0]} | |")
for name, roost_glob, peer_glob in [("write→SSE p99, 1,000 subscribers, 20 writes/s", "roost-delivery-*.json", "pocketbase-delivery-*.json")]:
    r, rm = fmt(load(roost_glob), "p99_ms", " ms")
    p, pm = fmt(load(peer_glob), "p99_ms", " ms")
    print(f"| {name} | {r} | PocketBase {p} | {ratio(rm, pm)} |")

idle = load("roost-idle.json")
cold = load("roost-cold-start.json")
print()
if idle:
    i = idle[0]
    print(f"- idle: {i['streams']:,} streams over {i['connections']} HTTP/2 connections: RSS {i['server_rss_mib']:.0f} MiB, {i['kib_per_stream']:.1f} KiB per stream")
if cold:
    c = cold[0]
    print(f"- cold start: {c['homes']:,} homes ({c['database_bytes'] / 1048576:.0f} MiB database): first answer after {c['first_answer_seconds']:.2f} s, RSS {c['rss_mib']:.0f} MiB")
