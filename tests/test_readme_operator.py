"""The README's operator example must not collide with the demo market's accounts, which `exchange
serve` opens by default right after the highest existing account (the operator's 1 on a fresh data
directory): a reader who follows both would find their account taken, or fund a demo trader."""

from __future__ import annotations

import re
from pathlib import Path

from exchange.demo_market import DemoConfig

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_operator_example_uses_an_account_the_demo_market_never_opens_first() -> None:
    text = README.read_text()
    ids = {int(n) for n in re.findall(r"`exchange (?:account create|deposit|withdraw|apikey create|positions|ledger) "
                                      r"(\d+)", text)}
    assert ids, "the README has no operator example"
    config = DemoConfig()
    participants = config.market_makers + config.takers + config.providers
    demo_ids = set(range(2, 2 + participants))   # after the operator's account 1
    assert not ids & demo_ids, f"README operator example uses demo account ids {sorted(ids & demo_ids)}"
