"""Baselines in the planners' harness: behaviour cloning and d3rlpy's IQL and TD3+BC."""
