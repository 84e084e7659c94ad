"""Tests of jobs/ports.py: each job's port range, the one bounded search, and the placeholders the job fills in."""
from __future__ import annotations

import contextlib
import errno
import socket

import pytest

from tests.helpers import hold_ports

from jobs import ports


@pytest.fixture(autouse=True)
def _no_slurm_job(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)




def test_each_job_starts_at_its_own_offset(monkeypatch):
    assert ports.start_port(5000) == 5000
    monkeypatch.setenv("SLURM_JOB_ID", "123456")
    assert ports.start_port(5000) == 5456
    monkeypatch.setenv("SLURM_JOB_ID", "2818")  # 6000 + 818: slurmd's port on a real node, skipped when in use
    assert ports.start_port(6000) == 6818


def test_the_first_free_port_skips_ports_in_use():
    with contextlib.ExitStack() as held:
        first = hold_ports(held, 2, start=21000)
        chosen = ports.free_port("127.0.0.1", first)
        assert chosen >= first + 2
        with socket.socket() as server:  # a server can listen there now
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", chosen))
    assert ports.free_port("127.0.0.1", first) == first  # free again once closed


def test_first_free_returns_what_bind_bound_and_tries_in_order(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "1003")
    tried = []

    def bind(host, port):
        tried.append(port)
        if port < 5005:
            raise OSError(errno.EADDRINUSE, "Address already in use")
        return ("bound", host, port)

    assert ports.first_free("127.0.0.1", 5000, bind) == ("bound", "127.0.0.1", 5005)
    assert tried == [5003, 5004, 5005]


def test_no_free_port_in_the_range_is_a_clear_error():
    tried = []

    def in_use(host, port):
        tried.append(port)
        raise OSError(errno.EADDRINUSE, "Address already in use")

    with pytest.raises(ports.PortError, match=r"^no free port on 127.0.0.1 in 5000-5100 \(base port 5000 \+ "
                                              r"SLURM_JOB_ID % 1000, then 100 more\): every one is in use"):
        ports.first_free("127.0.0.1", 5000, in_use)
    assert tried == list(range(5000, 5101))  # bounded: PORT_SEARCH ports after the first


def test_an_error_other_than_in_use_is_not_skipped():
    def refused(host, port):
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(PermissionError):
        ports.first_free("127.0.0.1", 80, refused)


def test_placeholders_are_filled_in_from_the_fixed_list():
    argv = ["python", "-m", "jobs.benchmark_client", "--server-url", "http://127.0.0.1:${LAUNCHER_SERVER_PORT}",
            "--sandbox-url", "http://127.0.0.1:${LAUNCHER_SANDBOX_PORT}", "--output", "/x/5000/$HOME/results.json"]
    assert ports.expand(argv, {"LAUNCHER_SERVER_PORT": "5242", "LAUNCHER_SANDBOX_PORT": "6242"}) == [
        "python", "-m", "jobs.benchmark_client", "--server-url", "http://127.0.0.1:5242",
        "--sandbox-url", "http://127.0.0.1:6242", "--output", "/x/5000/$HOME/results.json"]
    assert ports.placeholder(ports.SERVER_PORT_ENV) == "${LAUNCHER_SERVER_PORT}"
    with pytest.raises(ValueError, match="not one of the job's placeholders"):
        ports.placeholder("HF_TOKEN")


@pytest.mark.parametrize("word, message", [
    ("${HF_TOKEN}", r"\$\{HF_TOKEN\} in the command word '\$\{HF_TOKEN\}' is no placeholder the job fills in "
                    r"\(allowed: \$\{LAUNCHER_SERVER_PORT\}, \$\{LAUNCHER_SANDBOX_PORT\}, "
                    r"\$\{LAUNCHER_SANDBOX_PORT_FILE\}, \$\{LAUNCHER_TRITON_GRPC_PORT\}, "
                    r"\$\{LAUNCHER_TRITON_METRICS_PORT\}, \$\{LAUNCHER_NODE_RANK\}, \$\{LAUNCHER_SERVER_HEAD\}, "
                    r"\$\{LAUNCHER_SERVER_DIST_PORT\}\)"),
    ("--port=${LAUNCHER_SANDBOX_PORT}", r"\$\{LAUNCHER_SANDBOX_PORT\} in the command word "
                                        r"'--port=\$\{LAUNCHER_SANDBOX_PORT\}' has no value in this stage "
                                        r"\(known here: LAUNCHER_SERVER_PORT\)"),
    ("http://h:${LAUNCHER_SERVER_PORT", r"an unclosed \$\{ in the command word"),
    ("${}", r"\$\{\} in the command word '\$\{\}' is no placeholder"),
])
def test_an_unknown_or_unfilled_placeholder_is_an_error(word, message):
    with pytest.raises(ports.PortError, match=message):
        ports.expand(["tool", word], {"LAUNCHER_SERVER_PORT": "5000"})
