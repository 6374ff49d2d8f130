"""`/docs` and `/redoc` work without internet: every script, style sheet and icon they load is served
by the exchange itself (FastAPI's defaults load them from a CDN, so offline the pages were blank)."""

from __future__ import annotations

import re

import pytest

from tests.api.conftest import Api


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_api_docs_load_only_local_assets(api: Api, page: str) -> None:
    response = api.client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "cdn" not in html.lower() and "fonts.googleapis" not in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
    assert assets, html[:500]
    for asset in assets:
        assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"
        assert api.client.get(asset).status_code == 200, asset
    assert "/openapi.json" in html
