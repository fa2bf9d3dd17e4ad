"""medcli: composable command-line tools for deep-learning medical image processing."""

__version__ = "0.1.0"
