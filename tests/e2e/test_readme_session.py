"""The README's "A first session", run as written against a real `exchange serve` on a fresh data
directory: the server's first start writes data/operator-key.json, the Python block (SDK) opens and
funds an account and trades, and the curl block gets the documented 409 insufficient_margin. The
market-data section's ten lines of Python print the live book from the feed gateway.

The blocks are taken from README.md itself; only the server's address (a free port instead of 8000)
and the key file's path (absolute, in this test's directory) are substituted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.testing.server_process import REPO, ServerProcess

README = REPO / "README.md"
HEADING = "## A first session"
README_URL = "http://127.0.0.1:8000"
README_KEY_FILE = "data/operator-key.json"


def readme_block(language: str, heading: str = HEADING) -> str:
    """The first ```<language> block after `heading` (default "A first session")."""
    text = README.read_text()
    assert heading in text, f"README.md has no {heading!r} section"
    section = text.split(heading, 1)[1]
    match = re.search(rf"^```{language}\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert match, f"no ```{language} block in the README's {heading!r} section"
    return match.group(1)


VENV_BIN = ".venv/bin/"


def localized(block: str, server: ServerProcess) -> str:
    """The block with this test's server address, key file and virtualenv (the README's are the defaults
    of a user in the repository's directory)."""
    assert README_URL in block and README_KEY_FILE in block, "the README block no longer names the defaults"
    return (block.replace(README_URL, server.base_url)
            .replace(README_KEY_FILE, str(server.data_dir / "operator-key.json"))
            .replace(VENV_BIN, f"{Path(sys.executable).parent}/"))


def clean_env() -> dict[str, str]:
    """The environment of a user's shell: no EXCHANGE_* settings of the test run."""
    return {name: value for name, value in os.environ.items() if not name.startswith("EXCHANGE_")}


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`exchange serve` on a brand-new data directory with the defaults: no master key given (the
    server creates data/master.key), nothing bootstrapped."""
    tmp = tmp_path_factory.mktemp("readme")
    with ServerProcess(tmp / "data", master_key=None, cwd=tmp, feeds=True) as server:
        yield server


def test_first_start_writes_the_key_and_the_readme_python_session_runs(fresh_server: ServerProcess) -> None:
    path = fresh_server.data_dir / "operator-key.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = json.loads(path.read_text())
    assert key["account_id"] == 1 and set(key["scopes"]) == {"operator", "read", "trade"}
    assert key["key_id"] and key["secret"]

    code = localized(readme_block("python"), fresh_server)
    run = subprocess.run([sys.executable, "-c", code], cwd=fresh_server.cwd, env=clean_env(), capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 0, f"the README's Python block failed:\n{run.stderr}\n{run.stdout}"
    lines = run.stdout.splitlines()
    order_id, status, remaining = lines[0].split()
    assert order_id.isdigit() and (status, remaining) == ("open", "2"), run.stdout
    balances = lines[1]
    assert "'cash': '250000.000000'" in balances and "'available'" in balances, run.stdout


@pytest.mark.skipif(not all(shutil.which(tool) for tool in ("bash", "curl", "openssl", "python3", "base64")),
                    reason="the README's curl block needs bash, curl, openssl, python3 and base64")
def test_readme_curl_session_gets_the_documented_409(fresh_server: ServerProcess) -> None:
    script = localized(readme_block("sh"), fresh_server)
    # Print the status after the body too (the README shows it in prose: 409 insufficient_margin).
    assert script.count("curl -s -X POST") == 1
    script = script.replace("curl -s -X POST", "curl -s -w '\\n%{http_code}' -X POST")
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=fresh_server.cwd, env=clean_env(),
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, f"the README's curl block failed:\n{run.stderr}\n{run.stdout}"
    body, status = run.stdout.rstrip("\n").rsplit("\n", 1)
    answer = json.loads(body)
    assert (status, answer["code"]) == ("409", "insufficient_margin"), run.stdout
    assert set(answer) == {"code", "message", "details"}


MARKET_HEADING = "## Market data"
README_FEED_URL = "http://127.0.0.1:8001"


def test_readme_market_data_python_prints_the_live_book(fresh_server: ServerProcess) -> None:
    from exchange.client import Client, nearest_symbol

    block = readme_block("python", MARKET_HEADING)
    assert README_FEED_URL in block and README_URL in block, "the README block no longer names the defaults"
    key = json.loads((fresh_server.data_dir / "operator-key.json").read_text())
    with Client(fresh_server.base_url, key["key_id"], key["secret"]) as operator:
        symbol = nearest_symbol(operator.series(limit=500)["items"], "H100-M40")   # what the block picks
        trader = operator.create_account()["account_id"]
        operator.deposit(trader, "100000.00")
        credentials = operator.create_api_key(trader, ["read", "trade"])
    code = block.replace(README_FEED_URL, fresh_server.feed_url).replace(README_URL, fresh_server.base_url)
    watcher = subprocess.Popen([sys.executable, "-u", "-c", code], cwd=fresh_server.cwd, env=clean_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout is not None and watcher.stderr is not None
        first = watcher.stdout.readline().split()
        assert first[:1] == ["subscribed"], f"{first}: {watcher.stderr.read() if watcher.poll() else ''}"
        first = watcher.stdout.readline().split()
        assert first[:1] == ["book_snapshot"], first
        with Client(fresh_server.base_url, credentials["key_id"], credentials["secret"]) as me:
            ref = me.series_spec(symbol)["reference_price"]
            me.place_order(symbol, "buy", 1, price=ref)
        for _ in range(50):   # trades of other tests' orders may come first; the book_update shows our bid
            line = watcher.stdout.readline().split()
            if line[:1] == ["book_update"]:
                assert line[1] == ref and line[2] == "None" and int(line[3]) > int(first[3]), line
                break
        else:
            raise AssertionError("no book_update printed")
    finally:
        watcher.kill()
        watcher.wait()


# -- every code block of the README is run (or, for the two set-up lines, checked) by a test --------

QUICK_START_RUN = "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/exchange serve"


def readme_blocks() -> list[tuple[str, str, str]]:
    """(section heading, language, code) of every fenced block with a language, in order."""
    blocks, heading = [], "(top)"
    lines = README.read_text().splitlines(keepends=True)
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("## "):
            heading = line.strip()
        if line.startswith("```"):
            language = line[3:].strip()
            end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
            if language:
                blocks.append((heading, language, "".join(lines[index + 1:end])))
            index = end
        index += 1
    return blocks


def test_every_readme_code_block_is_run_by_a_test(fresh_server: ServerProcess) -> None:
    """A new block must get a test: each is one of the blocks the tests above run against a fresh
    server, or one of the two quick-start lines (the run command, which is how `fresh_server` starts,
    and the test command, which CI runs verbatim from .ci/run). Shell blocks must parse; any dated
    series symbol in a block fails (examples must run on any day: pick series by rule)."""
    covered = {
        ("(top)", "sh", QUICK_START_RUN + "\n"),
        ("(top)", "sh", "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/ruff check . "
                        "&& .venv/bin/mypy && .venv/bin/pytest -n auto\n"),
        (HEADING, "python", readme_block("python")),
        (HEADING, "sh", readme_block("sh")),
        (MARKET_HEADING, "python", readme_block("python", MARKET_HEADING)),
    }
    blocks = readme_blocks()
    for heading, language, code in blocks:
        assert (heading.split(" (")[0], language, code) in covered, (heading, language, code)
        assert not re.search(r"\b[A-Z0-9]+-M[0-9]{2}-(?:[FGHJKMNQUVXZ][0-9]{2}|[0-9]{2}W[0-9]{2}|[0-9]{6})\b", code), (
            f"a dated symbol in a README block stops working the day its series stops trading:\n{code}")
        if language == "sh":
            assert subprocess.run(["bash", "-n", "-c", code], check=False).returncode == 0, code
    assert len(blocks) == len(covered)
    ci = (REPO / ".ci" / "run").read_text()
    assert "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/ruff check . && " \
           ".venv/bin/mypy && .venv/bin/pytest -n auto" in ci
