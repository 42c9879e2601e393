"""The ServerApp: FedAvg, wrapped in fedleak's audit strategy when the run config names an ``attack`` (a malicious
server that sends trap weights to some clients and writes what their updates leak)."""
from fedleak.flower.app import server_app

app = server_app()
