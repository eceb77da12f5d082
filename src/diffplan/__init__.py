"""diffplan: planning with diffusion models for offline reinforcement learning.

Pipeline: ``data`` (episodes -> windows) -> ``models`` (networks) -> ``diffusion``
(schedules, samplers) -> ``planning`` -> ``evaluation`` -> report.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("diffplan")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"
