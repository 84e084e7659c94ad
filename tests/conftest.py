"""Shared pytest configuration for the launcher test suite."""

from tests.cluster.fixtures import slurm_cluster  # noqa: F401  (re-exported as a fixture)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "slurm: needs the real single-node Slurm test cluster (fixture `slurm_cluster`); "
        "deselect with -m 'not slurm'",
    )


def pytest_collection_modifyitems(config, items):
    # Every test that uses the cluster carries the `slurm` marker, explicitly or not.
    for item in items:
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker("slurm")
