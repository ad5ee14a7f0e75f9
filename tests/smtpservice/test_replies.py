"""The reply table: every reply in one place, each with an enhanced code where RFC 2034 asks for one."""
import ast
import pathlib
import re

import pytest

from smtpservice.core import replies

ROOT = pathlib.Path(__file__).resolve().parents[2]
WITHOUT_ENHANCED_CODE = {"GREETING", "START_DATA", "EHLO_OK", "CHALLENGE"}
"""RFC 2034 s 3: the greeting and 354 carry no enhanced code; EHLO's first line is the host name, 334 is base64."""
REPLY_TEXT = re.compile(r"^[245]\d\d[ -]|^[245]\.\d{1,3}\.\d{1,3} ")
"""A string literal that is an SMTP reply line, or a reply text starting with an enhanced code."""


@pytest.mark.parametrize("name", sorted(replies.ALL))
def test_every_reply_names_its_source_and_carries_an_enhanced_code(name):
    reply = replies.ALL[name]
    assert reply.source, name
    assert 200 <= reply.code < 600
    if name in WITHOUT_ENHANCED_CODE:
        assert reply.enhanced == ""
    else:
        # RFC 3463: the class of the enhanced code matches the reply code (2xx -> 2.x.x).
        assert reply.enhanced and reply.enhanced[0] == str(reply.code)[0], name


def python_sources():
    for folder in ("smtpservice", "directory", "adminconsole"):
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" not in path.parts and path.name != "replies.py":
                yield path


def test_no_reply_string_is_written_outside_the_reply_table():
    found = []
    for path in python_sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and REPLY_TEXT.match(node.value):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert found == []
