"""A SecAgg+ client doing bench-secure's work: the received parameters plus
N(0, 0.01^2) noise, masked by Flower's secaggplus_mod. `dropout_mod` makes a
client vanish from a round at a random stage by failing that stage's reply
(Flower then drops it at once, without waiting for a timeout)."""

import random

import numpy as np

from flwr.app import ConfigRecord, Context, Message
from flwr.app.message_type import MessageType
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp

STAGES = ["setup", "share_keys", "collect_masked_vectors", "unmask"]


class BenchClient(NumPyClient):
    def __init__(self, seed: int, pid: int):
        self.rng = np.random.default_rng([seed, pid])

    def fit(self, parameters, config):
        out = [p + self.rng.standard_normal(p.shape, dtype=np.float32) * np.float32(0.01) for p in parameters]
        return out, 100, {}


def client_fn(context: Context):
    return BenchClient(int(context.run_config["seed"]), int(context.node_config.get("partition-id", 0))).to_client()


def dropout_mod(msg: Message, ctxt: Context, call_next) -> Message:
    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, ctxt)
    configs = msg.content.config_records.get("secaggplus_configs")
    stage = configs.get("stage") if configs is not None else None
    if stage not in STAGES:
        return call_next(msg, ctxt)
    if stage == "setup":  # a new round: draw this client's fate for it
        previous = ctxt.state.config_records.get("bench_dropout")
        rounds = int(previous["rounds"]) + 1 if previous is not None else 1
        rng = random.Random(f"{ctxt.run_config['seed']}-{msg.metadata.dst_node_id}-{rounds}")
        fate = STAGES[rng.randrange(4)] if rng.random() < float(ctxt.run_config["dropout"]) else ""
        ctxt.state.config_records["bench_dropout"] = ConfigRecord({"rounds": rounds, "fate": fate})
    fate = str(ctxt.state.config_records["bench_dropout"]["fate"])
    if fate and STAGES.index(stage) >= STAGES.index(fate):
        raise RuntimeError(f"bench: this client drops out at the {stage} stage")
    return call_next(msg, ctxt)


app = ClientApp(client_fn=client_fn, mods=[dropout_mod, secaggplus_mod])
