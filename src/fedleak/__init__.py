"""fedleak: gradient leakage in federated learning — attacks, defenses and client-side detection."""
__version__ = "0.1.0"
