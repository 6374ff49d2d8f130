"""Double-entry cash ledger in integer micro-dollars.

Every movement is a transfer between two ledger accounts, so the balances of all accounts (trader
accounts plus the system accounts below) always sum to zero. Trader accounts use their positive
account id; system accounts are negative so they can never collide with one.
"""

from __future__ import annotations

from typing import Final

EXTERNAL: Final = -1   # the world outside: deposits come from it, withdrawals go to it
FEES: Final = -2       # the exchange's fee income
SETTLEMENT: Final = -3  # the clearing house's side of variation margin: it pays winners and collects from losers

SYSTEM_ACCOUNTS: tuple[int, ...] = (EXTERNAL, FEES, SETTLEMENT)


class Ledger:
    __slots__ = ("balances", "postings")

    def __init__(self) -> None:
        self.balances: dict[int, int] = {account: 0 for account in SYSTEM_ACCOUNTS}
        self.postings = 0  # number of transfers so far (a cheap progress figure for audits)

    def open(self, account_id: int) -> None:
        assert account_id not in self.balances, account_id
        self.balances[account_id] = 0

    def transfer(self, from_account: int, to_account: int, amount_micros: int) -> None:
        assert amount_micros > 0, amount_micros
        assert from_account != to_account, from_account
        balances = self.balances
        balances[from_account] -= amount_micros
        balances[to_account] += amount_micros
        self.postings += 1

    def total(self) -> int:
        """Sum over all ledger accounts; zero unless the ledger is broken."""
        return sum(self.balances.values())
