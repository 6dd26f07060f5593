#!/usr/bin/env python3
"""Runs Flower's SecAgg+ workflow (the secaggbench app beside this file) in
Flower's Simulation Engine, with the process sampling of
../shared/reference/flower/bench_driver.py (imported from the scratch copy
named by --harness), and prints one JSON summary: per-round wall seconds,
whether each round completed, CPU seconds of every process Flower started,
and peak RSS by role. Only processes it started are ever signalled."""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--harness", required=True, help="a writable copy of ../shared/reference/flower")
ap.add_argument("-N", type=int, required=True)
ap.add_argument("-d", type=int, required=True)
ap.add_argument("-R", type=int, default=2)
ap.add_argument("--dropout", type=float, default=0.0)
ap.add_argument("--num-shares", type=str, required=True, help="an int count (with the client itself) or a float fraction of N")
ap.add_argument("--threshold", type=str, required=True)
ap.add_argument("--timeout", type=float, default=60.0, help="seconds each stage waits for replies")
ap.add_argument("--limit", type=float, default=1800.0, help="whole-run limit (s)")
ap.add_argument("--port", type=int, default=19300)
ap.add_argument("--out", required=True)
args = ap.parse_args()

harness = Path(args.harness).resolve()
sys.path.insert(0, str(harness))
import bench_driver as bd  # noqa: E402  (the reference harness's sampling helpers)
import psutil  # noqa: E402

app_dir = Path(__file__).resolve().parent
run_dir = Path(args.out).resolve()
(run_dir / "logs").mkdir(parents=True, exist_ok=True)
flwr_home = run_dir / "flwr_home"
flwr_home.mkdir(exist_ok=True)
(flwr_home / "config.toml").write_text(f'[superlink]\ndefault = "bench"\n\n[superlink.bench]\naddress = "127.0.0.1:{args.port}"\ninsecure = true\n')
(harness / ".rt").mkdir(exist_ok=True)
env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", FLWR_HOME=str(flwr_home),
           FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1", FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
           PYTHONUNBUFFERED="1", RAY_USAGE_STATS_ENABLED="0", RAY_TMPDIR=str(harness / ".rt"), RAY_DISABLE_DOCKER_CPU_WARNING="1",
           NO_COLOR="1", TERM="dumb")
started = []


def spawn(cmd, logname):
    p = subprocess.Popen(cmd, env=env, stdout=open(run_dir / "logs" / logname, "wb"), stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, cwd=run_dir)
    started.append(p.pid)
    return p


def log(msg):
    print(f"[flower {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


summary = {"N": args.N, "d": args.d, "R": args.R, "dropout": args.dropout, "num_shares": args.num_shares,
           "reconstruction_threshold": args.threshold, "timeout": args.timeout}
try:
    superlink = spawn(["flower-superlink", "--insecure", "--disable-runtime-dependency-installation", "--host", "127.0.0.1",
                       "--port", str(args.port), "--simulation"], "superlink.log")
    if not bd.wait_http_ok(f"http://127.0.0.1:{args.port}/health", 60):
        raise SystemExit("flower: the SuperLink did not become healthy")
    cpu_before = bd.tree_cpu([superlink.pid])
    sampler = bd.Sampler([superlink.pid], 0.5)
    sampler.start()
    shares = args.num_shares if "." in args.num_shares else int(args.num_shares)
    threshold = args.threshold if "." in args.threshold else int(args.threshold)
    config = (f"num-clients={args.N} model-size={args.d} num-rounds={args.R} warmup-rounds=1 num-shares={shares} "
              f"reconstruction-threshold={threshold} timeout={args.timeout} dropout={args.dropout} out-dir={bd.toml_str(str(run_dir))}")
    cmd = ["flwr", "run", str(app_dir), "bench", "--run-config", config, "--stream", "--federation-config", f"num-supernodes={args.N}"]
    log("run: " + " ".join(cmd))
    start = time.time()
    result = run_dir / "serverapp_result.json"
    with open(run_dir / "logs" / "flwr_run.log", "wb") as fh:
        run = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=run_dir)
        started.append(run.pid)
        while run.poll() is None and not result.exists() and time.time() - start < args.limit:
            time.sleep(0.5)
        summary["timed_out"] = not result.exists() and run.poll() is None
        if run.poll() is None:
            try:
                run.wait(timeout=20)
            except subprocess.TimeoutExpired:
                run.terminate()
    summary["wall_s"] = round(time.time() - start, 2)
    time.sleep(1)
    sampler.sample_once()
    sampler.stop_evt.set()
    after = bd.tree_cpu([superlink.pid])
    summary["cpu_s"] = round(sum(after.values()) - sum(cpu_before.values()), 2)
    peaks = {}
    for info in sampler.procs.values():
        peaks[info["role"]] = max(peaks.get(info["role"], 0.0), info["peak_rss"] / 2**20)
    summary["peak_rss_mib_by_role"] = {k: round(v, 1) for k, v in sorted(peaks.items())}
    summary["peak_rss_mib_sum"] = {k: round(v / 2**20, 1) for k, v in sampler.peak_sum_by_group.items()}
    partial = run_dir / "serverapp_result.partial.json"
    source = result if result.exists() else partial if partial.exists() else None
    if source:
        every = json.loads(source.read_text())["per_round"]
        summary["all_rounds"] = every  # the warm-up's too: how far an unfinished run got
        rounds = [r for r in every if not r["warmup"]]
        summary["rounds"] = rounds
        summary["median_round_s"] = round(statistics.median(r["wall_s"] for r in rounds), 3) if rounds else None
        summary["completed_rounds"] = sum(r["completed"] for r in rounds)
    else:
        summary["rounds"] = []
        tail = (run_dir / "logs" / "flwr_run.log").read_text(errors="replace").splitlines()[-5:]
        summary["error"] = " | ".join(tail)
finally:
    bd.stop_pids(list(reversed(started)), log)
print(json.dumps(summary))
