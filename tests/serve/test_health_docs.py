"""Readiness, model version reporting and the OpenAPI documentation."""

import requests


def test_health_reports_the_loaded_model(base_url):
    reply = requests.get(f"{base_url}/health")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok", "model_version": "1", "detail": None}


def test_predictions_carry_the_model_version(base_url, mnist_test):
    reply = requests.post(f"{base_url}/predict", json={"image": mnist_test.images[0].tolist()})
    assert reply.headers["x-model-version"] == "1" and reply.json()["model_version"] == "1"


def test_docs_and_openapi(base_url):
    assert "swagger" in requests.get(f"{base_url}/docs").text.lower()
    spec = requests.get(f"{base_url}/openapi.json").json()
    assert {"/", "/predict", "/health", "/v2/models/{model_name}/infer"} <= set(spec["paths"])
    content = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "application/octet-stream", "image/png"}
