"""A video of one closed-loop episode, rendered offscreen by MuJoCo and saved as a GIF.

Headless machines need an offscreen OpenGL: ``MUJOCO_GL=egl`` (GPU or Mesa EGL) or
``MUJOCO_GL=osmesa``. :func:`diffplan.envs.make_render_env` sets ``egl`` when there is
no display and ``MUJOCO_GL`` is unset, only for the video; where rendering still fails,
the video is skipped with a message and everything else is kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffplan.atomic import atomic_path
from diffplan.envs import make_render_env
from diffplan.evaluation.closed_loop import Controller


def record_episode(
    controller: Controller,
    env_id: str,
    seed: int,
    path: Path,
    *,
    every: int = 4,
    size: tuple[int, int] = (320, 240),
    fps: int = 25,
) -> Path | None:
    """Run one episode with ``controller`` and write every ``every``-th frame to a GIF.

    Returns the path, or ``None`` (with the reason printed) where MuJoCo cannot render.
    """
    from PIL import Image  # Pillow comes with matplotlib

    try:
        env = make_render_env(env_id, *size)
        observation, _ = env.reset(seed=seed)
        frames = [env.render()]
    except Exception as error:  # OpenGL setup errors come in many types
        print(
            f"video skipped: MuJoCo could not render offscreen ({type(error).__name__}: {error}). "
            "Set MUJOCO_GL=egl or MUJOCO_GL=osmesa (needs the EGL or OSMesa library)."
        )
        return None
    controller.reset(1)
    ids = np.zeros(1, dtype=np.int64)
    done, step = False, 0
    while not done:
        action = controller.act(observation[None], ids)[0]
        observation, _, terminated, truncated, _ = env.step(action)
        done, step = terminated or truncated, step + 1
        if step % every == 0 or done:
            frames.append(env.render())
    env.close()
    images = [Image.fromarray(frame) for frame in frames]
    with atomic_path(path) as temporary:
        images[0].save(
            temporary,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=1000 // fps,
            loop=0,
        )
    return path
