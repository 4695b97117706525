"""Run testinfra commands through `podman exec` directly: the ansible:// backend costs about a
second per command, which made this scenario's restart loops several times slower."""
import pytest
import testinfra


@pytest.fixture
def host(host):
    return testinfra.get_host("podman://" + host.backend.host)
