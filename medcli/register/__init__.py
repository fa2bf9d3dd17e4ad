"""Image registration: rigid, affine and diffeomorphic (SyN-style), the pure functions behind ``medcli register``."""
