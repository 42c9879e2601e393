"""``fedleak audit`` as a product: a user's own model and data in, three answers out (does an update leak, what
stops it at what cost, would the client's checks catch a malicious server), one report.

:mod:`~fedleak.audit.config` (the options), :mod:`~fedleak.audit.inputs` (model and data from text),
:mod:`~fedleak.audit.checks` (the inputs checked before any work, and their digest), :mod:`~fedleak.audit.plan`
(the cells), :mod:`~fedleak.audit.cells` (running one), :mod:`~fedleak.audit.run` (the resumable run),
:mod:`~fedleak.audit.verdict` and :mod:`~fedleak.audit.report` (the answers, ``report.json`` and ``report.html``).
"""
from fedleak.audit.config import DEFAULT_DEFENSES, AuditConfig
from fedleak.audit.run import run_audit

__all__ = ["DEFAULT_DEFENSES", "AuditConfig", "run_audit"]
