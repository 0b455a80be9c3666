"""finrl_lab: reinforcement learning for trading, with real data and honest metrics.

Importing the package registers its Gymnasium environments
(``finrl_lab/Portfolio-v0``) without importing torch.
"""

__version__ = "0.1.0"

from finrl_lab.envs.registration import register_envs  # noqa: E402

register_envs()
