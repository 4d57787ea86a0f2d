"""Ray for one run: an existing cluster (``ray_address``) or a local instance of ours."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from arbitrage.errors import ClusterError, ConfigError

if TYPE_CHECKING:
    from arbitrage.config import RunConfig

RAY_MISSING = "engine: ray needs Ray, which is not installed: pip install 'data-arbitrage[ray]'"
NAMESPACE = "data-arbitrage"


def require_ray() -> Any:
    """The ``ray`` module, or a ``ConfigError`` naming the extra to install."""
    try:
        import ray
        import ray.data  # the pool is streamed with Ray Data
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a ``host:port`` (or ``ray://host:port``) that nothing listens on: Ray
    itself keeps retrying for minutes. ``auto`` and addresses without a port pass."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterError(
            f"ray_address {address!r}: nothing answers there ({exc.strerror or exc}); "
            "is the cluster up (ray start --head) and the address right?"
        ) from None


@contextmanager
def ray_session(config: RunConfig) -> Iterator[Any]:
    """Ray, initialised for this run.

    If Ray is already initialised in this process (a notebook, a test) it is used as is
    and left running. Otherwise this connects to ``ray_address`` (or ``RAY_ADDRESS``, which
    ``ray job submit`` sets) or starts a local instance (``ray.num_cpus``, a temporary
    directory of ours, no dashboard, usage stats off), and disconnects or shuts it down
    afterwards.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    # Ray reads this when it starts; a user who opted in keeps their choice.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    temp_dir = None
    address = config.ray_address or os.environ.get("RAY_ADDRESS")
    try:
        if address:
            check_reachable(address)
            ray.init(address=address, namespace=NAMESPACE, configure_logging=False)
        else:
            # Ray's sockets live in its temp dir, and a socket path may not exceed 107
            # bytes: a short directory under the system temp, not the run directory.
            temp_dir = tempfile.mkdtemp(prefix="arbitrage-ray-")
            ray.init(
                num_cpus=config.ray.num_cpus,
                namespace=NAMESPACE,
                _temp_dir=temp_dir,
                include_dashboard=False,
                configure_logging=False,
            )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        where = address or "a local instance"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(f"could not start or reach Ray ({where}): {first}") from None
    try:
        yield ray
    finally:
        ray.shutdown()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
