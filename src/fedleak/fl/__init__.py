"""Federated-learning simulation: clients, a server with hooks for attacks, FedAvg and FedSGD."""
from fedleak.fl.client import Client, ClientMod, ClientUpdate, ModelRefused, floating_state
from fedleak.fl.config import FLConfig
from fedleak.fl.reply_check import ReplyLimits, ReplyRefused, check_update
from fedleak.fl.robust import RobustAggregation, clip_update, trimmed_mean
from fedleak.fl.server import History, RoundRecord, Server, aggregate, check_model_input, weighted_mean
from fedleak.fl.simulation import FederationSpec, build_federation
from fedleak.fl.training import batch_gradients, evaluate, task_loss

__all__ = [
    "Client", "ClientMod", "ClientUpdate", "ModelRefused", "floating_state", "FLConfig", "History",
    "RoundRecord", "Server", "aggregate", "check_model_input", "weighted_mean", "FederationSpec", "build_federation",
    "batch_gradients", "evaluate", "task_loss", "ReplyLimits", "ReplyRefused", "check_update", "RobustAggregation",
    "clip_update", "trimmed_mean",
]
