"""Agents that produce datasets: RL Zoo / stable-baselines3 model zips."""

from diffplan.agents.zoo import Agent, AgentError, AgentLoader, file_sha256, load_agent

__all__ = ["Agent", "AgentError", "AgentLoader", "file_sha256", "load_agent"]
