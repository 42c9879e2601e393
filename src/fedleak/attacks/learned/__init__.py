"""Learned attacks: the server trains the model it sends together with a secret decoder (SEER, paper 000 §3.3)."""
