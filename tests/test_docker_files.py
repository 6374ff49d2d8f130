"""The container files say what the rest of the exchange does (Docker itself is not on this machine)."""

from __future__ import annotations

from pathlib import Path

DOCKER = Path(__file__).resolve().parent.parent / "docker"


def test_the_stack_runs_without_the_demo_unless_asked() -> None:
    compose = (DOCKER / "compose.yaml").read_text()
    assert "EXCHANGE_DEMO: ${EXCHANGE_DEMO:-false}" in compose


def test_the_health_check_asks_ready() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "/ready" in dockerfile and "/health'" not in dockerfile


def test_the_docker_readme_reads_the_operator_key_the_first_start_writes() -> None:
    readme = (DOCKER / "README.md").read_text()
    assert "/var/lib/exchange/operator-key.json" in readme and "account create 1" not in readme
