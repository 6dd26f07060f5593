"""ServerApp: FedAvg under Flower's SecAgg+ workflow (DefaultWorkflow with
SecAggPlusWorkflow as its fit workflow), each round timed around the
workflow's call; evaluation off. Writes serverapp_result.json in the shape
../shared/reference/flower/bench_driver.py reads."""

import json
import os
import resource
import time

import numpy as np

from flwr.app import Context
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

app = ServerApp()


class CountingFedAvg(FedAvg):
    """FedAvg that counts the rounds SecAgg+ got as far as aggregating."""

    aggregated = 0

    def aggregate_fit(self, server_round, results, failures):
        self.aggregated += 1
        return super().aggregate_fit(server_round, results, failures)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class TimedRounds:
    """Calls SecAgg+ and records each round's wall time, CPU and whether it completed."""

    def __init__(self, workflow, warmup: int, out_dir: str):
        self.workflow, self.warmup, self.out_dir = workflow, warmup, out_dir
        self.rounds = []

    def __call__(self, grid, context):
        aggregated, start, cpu = context.strategy.aggregated, time.perf_counter(), _cpu()
        self.workflow(grid, context)
        self.rounds.append({"warmup": len(self.rounds) < self.warmup, "wall_s": time.perf_counter() - start,
                            "serverapp_cpu_s": _cpu() - cpu, "completed": context.strategy.aggregated > aggregated})
        if self.out_dir:
            result = {"per_round": self.rounds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
            with open(os.path.join(self.out_dir, "serverapp_result.partial.json"), "w") as fh:
                json.dump(result, fh)


@app.main()
def main(grid, context: Context) -> None:
    cfg = context.run_config
    n, d = int(cfg["num-clients"]), int(cfg["model-size"])
    warmup, measured = int(cfg["warmup-rounds"]), int(cfg["num-rounds"])
    initial = ndarrays_to_parameters([np.zeros(d, dtype=np.float32)])
    strategy = CountingFedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n, min_available_clients=n,
                      initial_parameters=initial)
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=warmup + measured), strategy=strategy)
    shares, threshold = cfg["num-shares"], cfg["reconstruction-threshold"]
    secagg = SecAggPlusWorkflow(num_shares=shares, reconstruction_threshold=threshold, timeout=float(cfg["timeout"]))
    timed = TimedRounds(secagg, warmup, str(cfg["out-dir"]))
    DefaultWorkflow(fit_workflow=timed)(grid, legacy)
    out = str(cfg["out-dir"])
    if out:
        result = {"per_round": timed.rounds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        with open(os.path.join(out, "serverapp_result.json"), "w") as fh:
            json.dump(result, fh)
