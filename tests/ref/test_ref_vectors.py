"""spec/vectors/packages.json through nomyo_ref.

Every response-direction vector goes through ``SecureCompletionClient.decrypt_response``:
valid → the plaintext of ``plaintextHex`` (with the client's own ``_metadata`` keys), invalid
→ the exception of its ``expectedKind``, acceptable → either. The size vectors (request
direction) check the client's 10 MiB limit on exactly the bytes the vectors describe. A missing
data file fails the run: a deleted file must never look like a pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nomyo_ref import SecureCompletionClient, SecurityError, crypto, protocol

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors"
PACKAGES = VECTORS / "packages.json"
KEYS = VECTORS / "keys.json"


def _load() -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
    data = json.loads(PACKAGES.read_text())  # a missing file is a collection error, not a skip
    responses = [(group["keyId"], test) for group in data["testGroups"]
                 if group["direction"] == "response" for test in group["tests"]]
    sized = [test for group in data["testGroups"] for test in group["tests"]
             if "plaintextRecipe" in test]
    return responses, sized


RESPONSES, SIZED = _load()


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One client per vector key, loaded through the public load_keys (or its refusal)."""
    keys = json.loads(KEYS.read_text())["keys"]
    directory = tmp_path_factory.mktemp("vector-keys")
    result: dict[str, Any] = {}
    for key_id, entry in keys.items():
        path = directory / f"{key_id}.pem"
        path.write_text(entry["privateKeyPem"])
        client = SecureCompletionClient()
        try:
            client.load_keys(str(path))
        except ValueError as exc:
            result[key_id] = exc
        else:
            result[key_id] = client
    return result


def body_of(test: dict[str, Any]) -> bytes:
    if "packageText" in test:
        return test["packageText"].encode("utf-8")
    return json.dumps(test["package"]).encode("utf-8")


def test_vector_files_exist() -> None:
    assert PACKAGES.is_file(), f"{PACKAGES} is missing"
    assert KEYS.is_file(), f"{KEYS} is missing"


def expected_result(test: dict[str, Any]) -> dict[str, Any]:
    """The plaintext with the client's own _metadata keys: the server's processed_at (inside
    the encryption) kept, the package's top-level one never used (CHK-16, CHK-17)."""
    expected = json.loads(bytes.fromhex(test["plaintextHex"]))
    expected["_metadata"].update({"payload_id": test["payloadId"], "is_encrypted": True,
                                  "encryption_algorithm": "hybrid-aes256-rsa4096"})
    expected["_metadata"].setdefault("processed_at", None)
    return expected


@pytest.mark.parametrize(("key_id", "test"), RESPONSES,
                         ids=[f"tc{t['tcId']}-{'-'.join(t['flags'])}" for _, t in RESPONSES])
async def test_response_vector(key_id: str, test: dict[str, Any], clients: dict[str, Any]
                               ) -> None:
    client = clients[key_id]
    if test["result"] == "acceptable":
        # Either outcome is allowed (e.g. non-canonical base64 padding bits, PKG-10).
        assert isinstance(client, SecureCompletionClient), client
        error = SecurityError if test.get("expectedKind") == "security" else ValueError
        try:
            result = await client.decrypt_response(body_of(test), test["payloadId"])
        except error:
            return
        assert result == expected_result(test)
        return
    if test["result"] == "valid":
        assert isinstance(client, SecureCompletionClient), client
        # Byte for byte: the decrypted plaintext is exactly plaintextHex.
        _, fields = protocol.parse_package(body_of(test))
        assert bytes(crypto.decrypt_fields(fields, client.private_key)) == \
            bytes.fromhex(test["plaintextHex"])
        result = await client.decrypt_response(body_of(test), test["payloadId"])
        assert result == expected_result(test)
        return
    kind = test["expectedKind"]
    if test["stage"] == "key":
        assert isinstance(client, ValueError), "a key under 2048 bits must be refused"
        assert not isinstance(client, SecurityError)
        return
    assert isinstance(client, SecureCompletionClient), client
    error = SecurityError if kind == "security" else ValueError
    with pytest.raises(error) as info:
        await client.decrypt_response(body_of(test), test["payloadId"])
    if kind == "value":
        assert not isinstance(info.value, SecurityError)
    if test["stage"] == "crypto":
        assert str(info.value) == "decryption failed"


@pytest.mark.parametrize("test", SIZED, ids=[f"tc{t['tcId']}" for t in SIZED])
def test_size_vector(test: dict[str, Any]) -> None:
    recipe = test["plaintextRecipe"]
    assert recipe["kind"] == "chat_request_padded"
    size = recipe["size"]
    payload = {"model": "nomyo-size-test",
               "messages": [{"role": "user", "content": "a" * (size - 69)}]}
    if test["result"] == "valid":
        assert len(protocol.serialise_payload(payload)) == size
    else:
        with pytest.raises(ValueError, match="too large"):
            protocol.serialise_payload(payload)


def test_every_response_vector_is_run() -> None:
    assert len(RESPONSES) >= 100
