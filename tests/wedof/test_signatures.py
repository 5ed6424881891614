"""Webhook signature helpers: every accepted encoding, tampering, hostile headers."""

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wedof.signatures import SUPPORTED_ALGORITHMS, compute_signature, verify_signature

SECRET = "s3cr3t-webhook"
BODY = b'{"externalId":"4270885603","state":"inTraining"}'


def test_default_is_plain_lowercase_hex_hmac_sha256_of_raw_body():
    expected = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert compute_signature(SECRET, BODY) == expected
    assert verify_signature(SECRET, BODY, expected)


@pytest.mark.parametrize("algorithm", SUPPORTED_ALGORITHMS)
@pytest.mark.parametrize("encoding", ["hex", "prefixed", "base64"])
def test_each_encoding_round_trips(algorithm, encoding):
    header = compute_signature(SECRET, BODY, algorithm=algorithm, encoding=encoding)
    assert verify_signature(SECRET, BODY, header, algorithm=algorithm)


def test_encodings_have_the_expected_shapes():
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).digest()
    assert compute_signature(SECRET, BODY, encoding="prefixed") == "sha256=" + digest.hex()
    assert compute_signature(SECRET, BODY, encoding="base64") == base64.b64encode(digest).decode()
    assert compute_signature(SECRET, BODY, algorithm="sha512", encoding="prefixed").startswith("sha512=")


def test_upper_case_hex_and_prefix_and_surrounding_spaces_are_accepted():
    hexsig = compute_signature(SECRET, BODY)
    assert verify_signature(SECRET, BODY, hexsig.upper())
    assert verify_signature(SECRET, BODY, "SHA256=" + hexsig.upper())
    assert verify_signature(SECRET, BODY, f"  {hexsig}  ")


def test_bytes_and_str_secrets_are_equivalent():
    assert compute_signature(SECRET.encode(), BODY) == compute_signature(SECRET, BODY)
    assert verify_signature(SECRET.encode(), BODY, compute_signature(SECRET, BODY))


def test_tampered_body_is_rejected():
    header = compute_signature(SECRET, BODY)
    assert not verify_signature(SECRET, BODY.replace(b"inTraining", b"terminated"), header)
    assert not verify_signature(SECRET, BODY + b" ", header)


def test_wrong_secret_is_rejected():
    assert not verify_signature("other-secret", BODY, compute_signature(SECRET, BODY))


def test_signature_made_with_another_algorithm_is_rejected():
    sha512_header = compute_signature(SECRET, BODY, algorithm="sha512")
    assert not verify_signature(SECRET, BODY, sha512_header, algorithm="sha256")
    # a prefix naming a different algorithm than the configured one is refused too
    prefixed512 = compute_signature(SECRET, BODY, algorithm="sha512", encoding="prefixed")
    assert not verify_signature(SECRET, BODY, prefixed512, algorithm="sha256")
    assert not verify_signature(SECRET, BODY, "sha512=" + compute_signature(SECRET, BODY))


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "sha256=",
        "=",
        "not-a-signature",
        "zz" * 32,  # right length, not hex
        "sha256=" + "g" * 64,
        "md5=" + "0" * 32,
        "é" * 64,  # non-ASCII
        "\x00" * 64,
        "0" * 10_000,  # huge
        "====",
        base64.b64encode(b"short").decode(),  # valid base64, wrong length
        123,  # not even a string
        b"abc",
    ],
)
def test_garbage_headers_are_rejected_without_exception(header):
    assert verify_signature(SECRET, BODY, header) is False


def test_unsupported_algorithm_is_a_configuration_error():
    with pytest.raises(ValueError):
        verify_signature(SECRET, BODY, "x", algorithm="md5")
    with pytest.raises(ValueError):
        compute_signature(SECRET, BODY, algorithm="sha1")
    with pytest.raises(ValueError):
        compute_signature(SECRET, BODY, encoding="rot13")


@pytest.mark.parametrize("secret", ["", b"", None])
def test_empty_secret_is_a_configuration_error(secret):
    with pytest.raises(ValueError):
        verify_signature(secret, BODY, compute_signature(SECRET, BODY))


@given(body=st.binary(max_size=512), data=st.data())
def test_any_change_to_the_body_breaks_verification(body, data):
    header = compute_signature(SECRET, body)
    other = data.draw(st.binary(max_size=512).filter(lambda b: b != body))
    assert verify_signature(SECRET, body, header)
    assert not verify_signature(SECRET, other, header)


@given(
    body=st.binary(max_size=256), index=st.integers(min_value=0), new_char=st.sampled_from("0123456789abcdef")
)
def test_any_change_to_the_hex_signature_breaks_verification(body, index, new_char):
    header = compute_signature(SECRET, body)
    i = index % len(header)
    if header[i] == new_char:
        new_char = "0" if new_char != "0" else "1"
    tampered = header[:i] + new_char + header[i + 1 :]
    assert not verify_signature(SECRET, body, tampered)


@given(body=st.binary(max_size=256), header=st.text(max_size=200))
def test_arbitrary_text_header_never_raises_and_never_matches_by_chance(body, header):
    assert verify_signature(SECRET, body, header) is (
        header.strip().lower() == compute_signature(SECRET, body)
    )


@given(
    body=st.binary(max_size=256),
    encoding=st.sampled_from(["hex", "prefixed", "base64"]),
    flip=st.integers(0, 63),
)
def test_flipping_any_bit_of_the_digest_breaks_every_encoding(body, encoding, flip):
    digest = bytearray(hmac.new(SECRET.encode(), body, hashlib.sha256).digest())
    digest[flip % len(digest)] ^= 1 << (flip % 8)
    forged = {
        "hex": bytes(digest).hex(),
        "prefixed": "sha256=" + bytes(digest).hex(),
        "base64": base64.b64encode(bytes(digest)).decode(),
    }[encoding]
    assert not verify_signature(SECRET, body, forged)
