"""The control catalogue ships with the package and is well formed."""

from __future__ import annotations

from campus_provision.spec.controls import load_catalogue

REQUIRED = {
    "CP-NET-01", "CP-NET-02", "CP-NET-03", "CP-PKG-01", "CP-PKG-02", "CP-VOL-01", "CP-VOL-02",
    "CP-VOL-03", "CP-USB-01", "CP-USB-02", "CP-PRN-01", "CP-ACC-01", "CP-ACC-02", "CP-ACC-03",
    "CP-ACC-04", "CP-AUD-01", "CP-LOG-01", "CP-TIME-01",
}  # fmt: skip


def test_catalogue_has_the_required_controls_once_each() -> None:
    controls = load_catalogue().controls
    ids = [c.id for c in controls]
    assert len(ids) == len(set(ids))
    assert set(ids) >= REQUIRED


def test_each_control_id_matches_its_family_and_names_a_role() -> None:
    for control in load_catalogue().controls:
        assert control.id.split("-")[1] == control.family
        assert control.role.startswith("campus_")
