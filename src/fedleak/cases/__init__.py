"""The threat model as objects (STYLE.md "The threat model is an object"): a :class:`ThreatModel` says what the
server is and sees; an :class:`Audit` is the server side of one attack under it, which ``fl.Server`` (and Flower's
``fedleak.flower.AuditStrategy``) run directly. The data path:
server -> ``Audit.dispatch`` (what each client receives) -> client -> update -> ``Audit.observe`` (what the server
may see) -> the attack's ``reconstruct`` -> :func:`fedleak.cases.scoring.score` against the clients' true data,
which travels beside the updates -> ``audit.jsonl`` and the reconstructions. The B = 1 victims of paper 001's
privacy protocol (:mod:`fedleak.cases.victims`) are the same path without rounds: defended ``fl.Client`` s, one
honest attack built from ``ATTACKS``, one scorer.
"""
from fedleak.cases.audit import Audit, AuditRecord
from fedleak.cases.scoring import score
from fedleak.cases.threat_model import ThreatModel
from fedleak.cases.victims import VictimCase, attack_victims, victim_case

__all__ = ["Audit", "AuditRecord", "ThreatModel", "score", "VictimCase", "attack_victims", "victim_case"]
