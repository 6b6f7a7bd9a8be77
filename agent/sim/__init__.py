"""Simulated devices that speak the real protocols, for tests and for a demo without hardware."""
