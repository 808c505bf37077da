import hashlib

from events_pipeline.privacy.visitor_digest import visitor_digest


def test_the_digest_is_sha256_of_client_separator_visitor():
    assert visitor_digest("acme", "bob") == hashlib.sha256(b"acme\x1fbob").digest()


def test_the_separator_keeps_client_and_visitor_apart():
    assert visitor_digest("acme", "bob") != visitor_digest("acm", "ebob")
