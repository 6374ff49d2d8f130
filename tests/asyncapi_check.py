"""Check messages a real WebSocket sent against the AsyncAPI document's message schemas (tests use it)."""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema_rs

from exchange.api.asyncapi import document, message_name


@cache
def _validator(channel: str, name: str) -> Any:
    doc = document()
    messages = doc["channels"][channel]["messages"]
    if name not in messages:
        raise AssertionError(f"the AsyncAPI document has no {channel} message {name!r}")
    # The payload's $refs point into the document's components: validate with them at the root.
    schema = {**messages[name]["payload"], "components": doc["components"]}
    return jsonschema_rs.validator_for(schema)


def check(channel: str, message: Any) -> str:
    """The document's name of `message` (a dict the server sent on "orders" or "market"), after checking it
    against that message's payload schema; AssertionError naming every violation otherwise."""
    name = message_name(channel, message)
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}"
              for e in _validator(channel, name).iter_errors(message)]
    if errors:
        raise AssertionError(f"{channel} message {name} does not match the AsyncAPI document: {errors}\n{message}")
    return name
