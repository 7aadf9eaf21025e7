"""Simulated environments used for data generation and planning evaluation (Push-T)."""
