#!/usr/bin/env python3
"""Drives mixed load through a kar caller sidecar, then draws the panels of a
Grafana dashboard from Prometheus' answers to their PromQL.

Called by scripts/render-dashboard.sh, which starts the mesh and Prometheus.
Grafana is not needed: each panel's targets are evaluated with
/api/v1/query_range ($app and $__rate_interval substituted as Grafana would)
and drawn with matplotlib in the dashboard's grid.
"""
import argparse
import http.client
import json
import random
import re
import sys
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

RATE_INTERVAL = "20s"
STEP = 2  # seconds, the scrape interval


def call(conn, path, body, ctype):
    """POSTs body to path on a kept-alive connection; returns the status, or 0."""
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": ctype})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        conn.close()
        return 0


def load(caller, seconds, seed, counts, lock):
    """One worker: a mix of service calls (some failing) and actor calls."""
    rnd = random.Random(seed)
    u = urllib.parse.urlparse(caller)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    end = time.time() + seconds
    while time.time() < end:
        r = rnd.random()
        if r < 0.70:
            st = call(conn, "/kar/v1/service/greeter/call/helloText", f"load {seed}", "text/plain")
        elif r < 0.78:
            ms = rnd.choice([20, 50, 100, 200])
            st = call(conn, f"/kar/v1/service/greeter/call/slow?ms={ms}", "{}", "application/json")
        elif r < 0.82:  # the service answers 500: an error served
            st = call(conn, "/kar/v1/service/greeter/call/echo/fail?status=500", "x", "text/plain")
        elif r < 0.85:  # no such route in the service: a 404
            st = call(conn, "/kar/v1/service/greeter/call/no/such/path", "x", "text/plain")
        else:
            fork = f"load-{rnd.randrange(50)}"
            st = call(conn, f"/kar/v1/actor/Fork/{fork}/call/getHolder", "[]", "application/kar+json")
        with lock:
            counts[st] = counts.get(st, 0) + 1
        time.sleep(rnd.uniform(0.005, 0.02))  # a 2-core machine: leave room for the mesh


def call_absent(caller, seconds, counts, lock):
    """Calls a service no component provides: the mesh holds each call until
    -missing_component_timeout, then answers 408."""
    u = urllib.parse.urlparse(caller)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
    end = time.time() + seconds
    while time.time() < end:
        st = call(conn, "/kar/v1/service/absent/call/hello", "x", "text/plain")
        with lock:
            counts[st] = counts.get(st, 0) + 1


def wait_ready(caller, prometheus, deadline):
    """Waits until the greeter answers through the caller and Prometheus is up."""
    while time.time() < deadline:
        try:
            req = urllib.request.Request(
                caller + "/kar/v1/service/greeter/call/helloText", data=b"ready",
                headers={"Content-Type": "text/plain"}, method="POST")
            with urllib.request.urlopen(req, timeout=5) as r1, \
                    urllib.request.urlopen(prometheus + "/-/ready", timeout=5) as r2:
                if r1.status == 200 and r2.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit("render_dashboard: the mesh or Prometheus did not come up in time")


def query_range(prometheus, expr, start, end):
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": STEP})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{q}", timeout=30) as r:
        ans = json.load(r)
    if ans.get("status") != "success":
        raise RuntimeError(f"query {expr!r}: {ans}")
    return ans["data"]["result"]


def legend(fmt, labels):
    if not fmt:
        return json.dumps(labels) if labels else "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip()


def draw(dashboard, prometheus, app, start, end, load_secs, out):
    panels = [p for p in dashboard["panels"] if p.get("targets")]
    # 20 distinct colours: a panel can have more than the default cycle's 10 series.
    plt.rcParams["axes.prop_cycle"] = plt.cycler(color=plt.get_cmap("tab20").colors)
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 5.4, rows * 3.0), squeeze=False)
    fig.suptitle(f"{dashboard.get('title', 'dashboard')} — app {app}, a real run, "
                 f"{load_secs} s of load (Prometheus scraping every {STEP} s, rate over {RATE_INTERVAL})",
                 fontsize=12)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels):
        ax.set_title(panel.get("title", ""), fontsize=9.5, loc="left")
        drawn = zeros = 0
        for t in panel["targets"]:
            expr = t["expr"].replace("$__rate_interval", RATE_INTERVAL).replace("$app", app)
            for series in query_range(prometheus, expr, start, end):
                xs = [datetime.fromtimestamp(float(v[0]), tz=timezone.utc) for v in series["values"]]
                ys = [float(v[1]) for v in series["values"]]
                # As Grafana's "hide series with only zeros": drawn, not named.
                named = any(y != 0 for y in ys)
                label = legend(t.get("legendFormat"), series["metric"]) if named else "_nolegend_"
                ax.plot(xs, ys, linewidth=1.2, label=label)
                drawn += 1
                zeros += not named
        if drawn > zeros:
            ax.legend(fontsize=6.5, loc="best", ncol=2 if drawn - zeros > 4 else 1, framealpha=0.7)
        if zeros:
            ax.set_xlabel(f"and {zeros} series at 0 throughout" if drawn > zeros else "every series at 0 throughout",
                          fontsize=6.5, color="grey", loc="right")
        if not drawn:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if unit == "s" and drawn > zeros:
            # Latencies span 1 ms to the 10 s a held call waits: a log scale shows them all.
            ax.set_yscale("log")
            ax.set_ylabel("s (log scale)", fontsize=7)
        elif unit and unit != "short":
            ax.set_ylabel(unit, fontsize=7)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=timezone.utc))
        ax.grid(alpha=0.3)
        if ax.get_yscale() == "linear":
            ax.set_ylim(bottom=0)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(out, dpi=72)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-app", required=True)
    ap.add_argument("-caller", required=True, help="runtime URL of a kar sidecar without a component")
    ap.add_argument("-prometheus", required=True)
    ap.add_argument("-seconds", type=int, default=60)
    ap.add_argument("-workers", type=int, default=4)
    ap.add_argument("-dashboard", required=True)
    ap.add_argument("-out", required=True)
    a = ap.parse_args()
    with open(a.dashboard) as f:
        dashboard = json.load(f)

    wait_ready(a.caller, a.prometheus, time.time() + 120)
    start = time.time() - 2 * STEP
    counts, lock = {}, threading.Lock()
    workers = [threading.Thread(target=load, args=(a.caller, a.seconds, i, counts, lock))
               for i in range(a.workers)]
    workers += [threading.Thread(target=call_absent, args=(a.caller, a.seconds, counts, lock))
                for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print("render_dashboard: calls by status:", dict(sorted(counts.items())))
    time.sleep(3 * STEP)  # the last scrapes
    draw(dashboard, a.prometheus, a.app, start, time.time(), a.seconds, a.out)
    print(f"render_dashboard: wrote {a.out}")


if __name__ == "__main__":
    main()
