"""Agents that produce datasets: RL Zoo / stable-baselines3 zips and diffplan's own format."""

from diffplan.agents.loading import load_agent
from diffplan.agents.zoo import Agent, AgentError, AgentLoader, agent_sha256

__all__ = ["Agent", "AgentError", "AgentLoader", "agent_sha256", "load_agent"]
