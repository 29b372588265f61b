"""The ClientHello parser, on real ClientHellos from Python's ssl."""

from __future__ import annotations

import random

import pytest

from hubgate.hub_service.scheduler_proxy import (
    ClientHelloError,
    IncompleteClientHello,
    parse_target,
    read_sni,
)

from .hello import client_hello, split_records


@pytest.mark.parametrize("name", ["daskgateway-alpha", "daskgateway-ns.cluster-1", "x"])
def test_reads_the_server_name(name: str) -> None:
    assert read_sni(client_hello(name)) == name


def test_every_prefix_asks_for_more() -> None:
    hello = client_hello("daskgateway-alpha")
    for cut in range(len(hello)):
        with pytest.raises(IncompleteClientHello):
            read_sni(hello[:cut])


def test_extra_bytes_after_the_hello_are_ignored() -> None:
    hello = client_hello("daskgateway-alpha")
    assert read_sni(hello + b"\x17\x03\x03") == "daskgateway-alpha"


def test_hello_spread_over_several_records() -> None:
    hello = split_records(client_hello("daskgateway-alpha"), 7)
    assert read_sni(hello) == "daskgateway-alpha"
    with pytest.raises(IncompleteClientHello):
        read_sni(hello[:-1])


def test_no_server_name() -> None:
    assert read_sni(client_hello(None)) is None


@pytest.mark.parametrize(
    "data",
    [b"GET / HTTP/1.1\r\n\r\n", b"\x16\x09\x01\x00\x10", b"\x16\x03\x01\x00\x00"],
    ids=["http", "bad-version", "empty-record"],
)
def test_not_tls(data: bytes) -> None:
    with pytest.raises(ClientHelloError):
        read_sni(data)


def test_not_a_client_hello() -> None:
    # A ServerHello-typed handshake message in a handshake record.
    hello = bytearray(client_hello("daskgateway-alpha"))
    hello[5] = 2
    with pytest.raises(ClientHelloError, match="not a ClientHello"):
        read_sni(bytes(hello))


def test_oversized_hello_is_refused_early() -> None:
    record = b"\x16\x03\x01\x00\x04" + b"\x01\xff\xff\xff"
    with pytest.raises(ClientHelloError, match="too big"):
        read_sni(record)


def test_garbage_only_ever_raises_the_two_errors() -> None:
    rng = random.Random(1234)
    hello = client_hello("daskgateway-alpha")
    for _ in range(3000):
        data = bytearray(hello)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            result = read_sni(bytes(data[: rng.randint(0, len(data))]))
        except (ClientHelloError, IncompleteClientHello):
            continue
        assert result is None or isinstance(result, str)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("127.0.0.1:8786", ("127.0.0.1", 8786)),
        ("tls://10.0.0.5:40000", ("10.0.0.5", 40000)),
        ("[::1]:8786", ("::1", 8786)),
        ("node-3.cluster:1234", ("node-3.cluster", 1234)),
    ],
)
def test_parse_target(target: str, expected: tuple[str, int]) -> None:
    assert parse_target(target) == expected


@pytest.mark.parametrize("target", ["127.0.0.1", ":8786", "host:port", "host:0", "h:70000"])
def test_parse_target_rejects(target: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        parse_target(target)
