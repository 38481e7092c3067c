"""The text helpers the checks use to read configuration files."""

from __future__ import annotations

from campus_provision.checks.conftest import active_lines, names_address

CONFIG = """
# target="10.254.2.12" is only a comment
action(type="omfwd" target="10.254.2.11" port="514" protocol="tcp")
server 10.254.2.120 iburst
"""


def test_comments_and_blank_lines_do_nothing() -> None:
    assert active_lines(CONFIG) == [
        'action(type="omfwd" target="10.254.2.11" port="514" protocol="tcp")',
        "server 10.254.2.120 iburst",
    ]


def test_an_address_is_matched_whole() -> None:
    lines = active_lines(CONFIG)
    assert names_address(lines, "10.254.2.11")
    assert not names_address(lines, "10.254.2.1")  # a prefix of .11 and .120
    assert not names_address(lines, "10.254.2.12")  # only in a comment, and a prefix of .120
    assert names_address(lines, "10.254.2.120")
