"""Cross-field rules, each reported at the field that has to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from campus_provision.errors import SpecError
from campus_provision.spec import load_spec_bytes
from tests.conftest import line_of, replace_once

F = Path("campus.yml")


def only_issue(text: str) -> str:
    with pytest.raises(SpecError) as err:
        load_spec_bytes(text.encode(), F)
    lines = err.value.lines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("old", "new", "needle", "expected"),
    [
        (
            '{hostname: sgm-s02, ip: 10.21.1.12, mac: "52:54:00:21:01:12"}',
            '{hostname: sgm-s02, ip: 10.21.1.12, mac: "52:54:00:21:01:11"}',
            "sgm-s02",
            "sites.sangam.workstation_groups.2.hosts.1.mac: MAC 52:54:00:21:01:11 is used twice",
        ),
        (
            "{hostname: sgm-s02, ip: 10.21.1.12,",
            "{hostname: sgm-s02, ip: 10.21.1.11,",
            "sgm-s02",
            "sites.sangam.workstation_groups.2.hosts.1.ip: address 10.21.1.11 of 'sgm-s02' is used twice",
        ),
        (
            "        first_ip: 10.21.0.51",
            "        first_ip: 10.21.0.30",
            "first_ip: 10.21.0.30",
            "sites.sangam.workstation_groups.1.first_ip: address 10.21.0.30 of 'sgm-b01' is used twice",
        ),
        (
            "        first_ip: 10.21.1.101",
            "        first_ip: 10.21.1.250",
            "first_ip: 10.21.1.250",
            "sites.sangam.workstation_groups.4.first_ip: 8 PCs from 10.21.1.250 (up to 10.21.2.1) do not fit",
        ),
        (
            "        first_ip: 10.22.0.11",
            "        first_ip: 10.22.0.1",
            "first_ip: 10.22.0.1",
            "sites.gaepo.workstation_groups.0.first_ip: the range 10.22.0.1-10.22.0.20 includes the gateway",
        ),
        (
            "        room: lab-2\n",
            "        room: lab-3\n",
            "room: lab-3",
            "sites.gaepo.workstation_groups.1.room: no room 'lab-3' in site 'gaepo'",
        ),
        (
            "datasets: [card-spending-foreign-visitors, transit-smartcard-trips]",
            "datasets: [card-spending-foreign-visitors, subway-trips]",
            "subway-trips",
            "sites.gaepo.workstation_groups.1.datasets.1: no dataset 'subway-trips' in the catalogue",
        ),
        (
            "    readers: [housing-policy]\n",
            "    readers: [housing]\n",
            "readers: [housing]",
            "datasets.8.readers.0: no analyst group 'housing'",
        ),
        (
            "    export: forbidden\n    readers: [housing-policy]\n",
            "    export: forbidden\n    readers: []\n",
            "readers: []",
            "datasets.8.readers: a restricted dataset needs the analyst groups that may read it",
        ),
        (
            "    - control: CP-PRN-01\n      hosts: [sgm-out01]",
            "    - control: CP-PRN-09\n      hosts: [sgm-out01]",
            "CP-PRN-09",
            "controls.waivers.0.control: no control 'CP-PRN-09' in the catalogue",
        ),
        (
            "      hosts: [sgm-out01]",
            "      hosts: [sgm-out99]",
            "sgm-out99",
            "controls.waivers.0.hosts.0: no host 'sgm-out99' in this campus",
        ),
        (
            "{username: jung-daeho, name: Jung Dae-ho",
            "{username: guest, name: Jung Dae-ho",
            "username: guest",
            "accounts.analysts.2.username: 'guest' names a role, not a person; shared accounts are not allowed",
        ),
        (
            "{username: han-soyoung, name: Han So-young",
            "{username: jung-daeho, name: Han So-young",
            "name: Han So-young",
            "accounts.analysts.3.username: 'jung-daeho' already has an account at accounts.analysts.2",
        ),
        (
            "  removed: [baek-junho]",
            "  removed: [oh-minseo]",
            "removed: [oh-minseo]",
            "accounts.removed.0: 'oh-minseo' is listed as removed but still has an account",
        ),
        (
            "    hostname: gp-mirror\n    ip: 10.22.10.10",
            "    hostname: gp-mirror\n    ip: 10.23.10.10",
            "ip: 10.23.10.10",
            "services.5.ip: 10.23.10.10 is outside every network of site 'gaepo'",
        ),
        (
            "    hostname: gp-infra\n    ip: 10.22.10.12\n    ports: [53/udp",
            "    hostname: gp-infra\n    ip: 10.22.10.13\n    ports: [53/udp",
            "ip: 10.22.10.13",
            "services.8.ip: host 'gp-infra' has address 10.22.10.12 at services.7.ip",
        ),
        (
            "    ports: [514/tcp]\n  - name: gaepo-ntp",
            "    ports: [514/tcpp]\n  - name: gaepo-ntp",
            "514/tcpp",
            "services.6.ports.0: '514/tcpp' is not PORT/tcp or PORT/udp (for example 443/tcp)",
        ),
        (
            "    gateway: 10.21.10.1\n",
            "    gateway: 10.21.10.255\n",
            "gateway: 10.21.10.255",
            "sites.sangam.networks.servers.gateway: 10.21.10.255 is not a host address of 10.21.10.0/24",
        ),
        (
            "        cidr: 10.21.10.0/24",
            "        cidr: 10.21.10.1/24",
            "cidr: 10.21.10.1/24",
            "sites.sangam.networks.servers.cidr: 10.21.10.1/24 has host bits set; the network is 10.21.10.0/24",
        ),
        (
            '        hostname: "gp-k{n:02d}"',
            '        hostname: "gp-k{i}"',
            "gp-k{i}",
            "sites.gaepo.workstation_groups.2.hostname: 'gp-k{i}' is not a hostname pattern",
        ),
    ],
    ids=lambda v: v[:24] if isinstance(v, str) else None,
)
def test_rule(example_text: str, old: str, new: str, needle: str, expected: str) -> None:
    text = replace_once(example_text, old, new)
    assert only_issue(text).startswith(f"campus.yml:{line_of(text, needle)}: {expected}")


def test_every_site_needs_a_reachable_mirror(example_text: str) -> None:
    start = example_text.index("  - name: gaepo-mirror")
    end = example_text.index("  - name: gaepo-log")
    text = example_text[:start] + example_text[end:]
    assert only_issue(text) == (
        f"campus.yml:{line_of(text, 'services:')}: services: PCs of site 'gaepo' can reach no "
        "'mirror' service; add one with site: gaepo or scope: campus"
    )


def test_log_host_is_optional_when_the_log_family_is_off(example_text: str) -> None:
    start = example_text.index("  - name: gaepo-log")
    end = example_text.index("  - name: gaepo-ntp")
    text = example_text[:start] + example_text[end:]
    assert "can reach no 'log' service" in only_issue(text)
    text = replace_once(text, "    log: true\n", "    log: false\n")
    campus = load_spec_bytes(text.encode(), F)
    assert campus.controls.families.log is False


def test_campus_scoped_service_is_reachable_from_every_site(example_text: str) -> None:
    campus = load_spec_bytes(example_text.encode(), F)
    gaepo = {s.name for s in campus.services_for_site("gaepo")}
    assert "campus-licence" in gaepo
    assert "sangam-mirror" not in gaepo


def test_group_needs_either_a_pattern_or_hosts(example_text: str) -> None:
    text = replace_once(example_text, "        count: 6\n", "")
    assert only_issue(text) == (
        f"campus.yml:{line_of(text, '- name: gp-kiosk')}: sites.gaepo.workstation_groups.2: "
        "give count, hostname and first_ip together (or list hosts instead)"
    )


def test_rooms_of_two_sites_may_not_render_to_one_group(example_text: str) -> None:
    """Site sangam's room analysis-a and site sangam-analysis's room a: room_sangam_analysis_a."""
    text = example_text.replace("\n  gaepo:\n", "\n  sangam-analysis:\n")
    text = text.replace("site: gaepo\n", "site: sangam-analysis\n").replace(
        ", gaepo]", ", sangam-analysis]"
    )
    text = text.replace("\n      lab-1:\n", "\n      a:\n").replace("room: lab-1\n", "room: a\n")
    assert only_issue(text) == (
        f"campus.yml:{line_of(text, '      a:')}: sites.sangam-analysis.rooms.a: renders to the "
        "inventory group room_sangam_analysis_a, as room 'analysis-a' of site 'sangam' does; "
        "rename one of them"
    )
