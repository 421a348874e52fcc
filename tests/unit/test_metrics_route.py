"""``GET /metrics`` answers Prometheus' text format with one charset parameter."""

from litestar.testing import TestClient

from veena.platform.app import create_app


def test_metrics_content_type_names_the_charset_once():
    with TestClient(create_app()) as client:
        resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE veena_ready gauge" in resp.text
