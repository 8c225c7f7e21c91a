"""Start-up: one-image `bloodcell predict` per engine, `bloodcell serve` until /health answers,
and the imports that remain.

Usage::

    .venv/bin/python benchmarks/startup.py RUN IMAGE [--engines auto onnx torch] [--repeats 5]
        [--serve-timeout 30] [--no-serve] [--json OUT.json]

For each engine, runs the console script as a user would, `--repeats` times::

    bloodcell predict RUN IMAGE --engine E

and reports the wall time (from starting the process to its exit) and the peak RSS (`wait4`
rusage of the child: the largest of the processes it became, re-execution included), median
and best. Then starts `bloodcell serve RUN` on a free loopback port and polls `GET /health`
every 10 ms until it answers 200 (at most `--serve-timeout` s), reports that time and kills
the server. Last, `python -X importtime` of the one-image predict with the default engine: the
ten top-level imports that take longest (cumulative, microseconds as Python reports them) and
whether torch, torchvision, Lightning or crepes are among all the modules imported.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

BLOODCELL = Path(sys.executable).with_name("bloodcell")
#: Modules the ONNX start-up path should not need.
HEAVY = (
    "torch",
    "torchvision",
    "lightning",
    "pytorch_lightning",
    "crepes",
    "sklearn",
    "pandas",
    "scipy",
    "skimage",
)


def run_once(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `cmd` to its end: wall seconds, peak RSS (MB) of the child, exit code, stderr."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    err = proc.stderr.read()  # a pipe left unread could block the child
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "seconds": seconds,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "rc": proc.returncode,
        "stderr": err.decode(errors="replace"),
    }


def predict_times(run: Path, image: Path, engine: str, repeats: int) -> dict[str, Any]:
    cmd = [str(BLOODCELL), "predict", str(run), str(image), "--engine", engine]
    runs = [run_once(cmd) for _ in range(repeats)]
    failed = [r for r in runs if r["rc"] != 0]
    if failed:
        raise SystemExit(f"bloodcell predict --engine {engine} failed:\n{failed[0]['stderr']}")
    lines = runs[0]["stderr"].splitlines()
    said = [ln.split(":", 1)[1].split("(")[0].strip() for ln in lines if ln.startswith("engine:")]
    answered = said[0] if said else "?"
    secs = [r["seconds"] for r in runs]
    rss = [r["peak_rss_mb"] for r in runs]
    return {
        "engine": engine,
        "answered_by": answered,
        "runs": repeats,
        "wall_s_median": round(statistics.median(secs), 3),
        "wall_s_best": round(min(secs), 3),
        "peak_rss_mb_median": round(statistics.median(rss), 1),
        "peak_rss_mb_max": round(max(rss), 1),
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_time(run: Path, engine: str, timeout: float) -> dict[str, Any]:
    """Seconds from starting `bloodcell serve` to the first 200 from /health (loopback)."""
    port = free_port()
    cmd = [str(BLOODCELL), "serve", str(run), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--engine", engine, "--log-level", "warning"]
    url = f"http://127.0.0.1:{port}/health"
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    answered = None
    body: dict[str, Any] = {}
    try:
        while time.perf_counter() - t0 < timeout and proc.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        answered = time.perf_counter() - t0
                        body = json.loads(r.read())
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if answered is None:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise SystemExit(f"bloodcell serve gave no 200 from /health in {timeout} s:\n{err[-2000:]}")
    return {"engine": engine, "answered_by": body.get("engine"), "health_200_s": round(answered, 3)}


def import_profile(run: Path, image: Path, top: int = 10) -> dict[str, Any]:
    """`-X importtime` of the one-image predict (default engine): top-level imports by
    cumulative time, and which heavy modules were imported at all."""
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")  # survives a re-execution
    cmd = [sys.executable, "-m", "bloodcell.cli", "predict", str(run), str(image)]
    r = run_once(cmd, env)
    if r["rc"] != 0:
        raise SystemExit(f"bloodcell predict failed:\n{r['stderr'][-2000:]}")
    rows = []  # (cumulative us, name indented by nesting) per "import time: self | cum | name"
    for line in r["stderr"].splitlines():
        if not line.startswith("import time:") or line.count("|") < 2:
            continue
        _, cumulative, name = line.split(":", 1)[1].split("|", 2)
        if cumulative.strip().isdigit():  # not the header line
            rows.append((int(cumulative), name[1:]))
    top_level = sorted(((us, n) for us, n in rows if not n.startswith(" ")), reverse=True)
    names = {n.strip() for _, n in rows}
    return {
        "top": [{"module": n, "cumulative_us": us} for us, n in top_level[:top]],
        "modules": len(names),
        "heavy_imported": [m for m in HEAVY if m in names],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="run or model directory")
    ap.add_argument("image", type=Path, help="one image file")
    ap.add_argument("--engines", nargs="+", default=["auto", "onnx", "torch"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--serve-engine", default="auto")
    ap.add_argument("--serve-timeout", type=float, default=30.0)
    ap.add_argument("--no-serve", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    out: dict[str, Any] = {"cpu_count": os.cpu_count(), "load_avg": os.getloadavg()[0]}
    print(
        f"bloodcell predict {args.run} {args.image} (wall s, peak RSS MB; "
        f"median and best of {args.repeats}; load avg {out['load_avg']:.1f}, "
        f"{os.cpu_count()} CPUs)"
    )
    print(f"{'engine':<10} {'answered by':<11} {'wall s':>8} {'best s':>8} {'peak MB':>8}")
    out["predict"] = []
    for engine in args.engines:
        r = predict_times(args.run, args.image, engine, args.repeats)
        out["predict"].append(r)
        print(
            f"{engine:<10} {r['answered_by']:<11} {r['wall_s_median']:>8.3f} "
            f"{r['wall_s_best']:>8.3f} {r['peak_rss_mb_median']:>8.1f}",
            flush=True,
        )
    if not args.no_serve:
        s = serve_time(args.run, args.serve_engine, args.serve_timeout)
        out["serve"] = s
        print(
            f"bloodcell serve {args.run} --engine {s['engine']}: /health 200 after "
            f"{s['health_200_s']:.3f} s (answered by {s['answered_by']})",
            flush=True,
        )
    imports = import_profile(args.run, args.image)
    out["imports"] = imports
    heavy = ", ".join(imports["heavy_imported"]) or "none"
    print(
        f"imports of `bloodcell predict RUN IMAGE` ({imports['modules']} modules; "
        f"torch and co. imported: {heavy}); top 10 top-level by cumulative time:"
    )
    for row in imports["top"]:
        print(f"  {row['cumulative_us'] / 1000:>8.1f} ms  {row['module']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
