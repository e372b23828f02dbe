"""The backplane's configuration: it needs the cluster secret, and peers are host:port."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config.models import ClusterConfig

SECRET = "x" * 32


def test_the_backplane_needs_the_secret_and_valid_peers() -> None:
    with pytest.raises(ValidationError, match="the backplane needs cluster.secret"):
        ClusterConfig(backplane="192.0.2.11:7100")
    with pytest.raises(ValidationError, match="a peer must be host:port, not 'gw-2'"):
        ClusterConfig(secret=SECRET, backplane="192.0.2.11:7100", peers=["gw-2"])
    with pytest.raises(ValidationError):
        ClusterConfig(secret=SECRET, backplane="7100")
    config = ClusterConfig(secret=SECRET, backplane="192.0.2.11:7100", peers=["192.0.2.12:7100", "[2001:db8::2]:7100"])
    assert config.peers[1] == "[2001:db8::2]:7100"
