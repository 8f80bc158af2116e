from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.hub.hub_server import LocalHub


@pytest.fixture
def hub() -> Iterator[LocalHub]:
    server = LocalHub().start()
    server.add(
        "trl-lib/ultrafeedback_binarized", repo_type="dataset", files=["data/train.parquet", "README.md"]
    )
    server.add("trl-lib/argilla-dpo-mix-7k-v2", repo_type="dataset", files=["data/train.parquet"])
    server.add("trl-lib/tldr", repo_type="dataset", files=["data/train.parquet"])
    server.add(
        "Qwen/Qwen2-0.5B",
        files=["config.json", "model.safetensors"],
        parameters=494_032_768,
        tags={"v1.0": ""},
    )
    server.add("meta-llama/Llama-3.1-8B", files=["config.json"], parameters=8_030_261_248, gated=True)
    server.add("acme/private-model", files=["config.json"], parameters=1_000_000, private=True)
    try:
        yield server
    finally:
        server.stop()
