"""Model manipulations by a malicious server (papers 002 and 000), each ``manipulate(model, config) ->
(manipulated_model, secret)`` with an ``extract(update, secret) -> Reconstruction`` that reads the client's update
only. They are registered as attacks in :data:`fedleak.attacks.ATTACKS` (names in :data:`fedleak.attacks.MALICIOUS`).
"""
