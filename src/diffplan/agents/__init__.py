"""Agents that produce datasets: RL Zoo / stable-baselines3 zips and diffplan's own format."""

from diffplan.agents.loading import PACKAGED_WALKER2D_AGENT, load_agent
from diffplan.agents.zoo import Agent, AgentError, AgentLoader, agent_sha256

__all__ = [
    "PACKAGED_WALKER2D_AGENT",
    "Agent",
    "AgentError",
    "AgentLoader",
    "agent_sha256",
    "load_agent",
]
