"""A Flower app on fedleak (see README.md): the same code under ``flwr run`` in simulation and deployment."""
