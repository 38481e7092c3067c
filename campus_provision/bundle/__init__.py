"""The offline package bundle: a signed apt repository carried into the air gap.

On a connected staging machine :func:`~campus_provision.bundle.build.build_bundle`
resolves the dependency closure of the spec's software profiles with apt's own resolver,
downloads it, and lays it out as an apt repository (``pool/``, ``dists/``) signed with the
campus archive OpenPGP key, plus ``bundle.json``: a manifest of every file signed with the
campus Ed25519 key. On the mirror :func:`~campus_provision.bundle.verify.verify_bundle`
checks all of that before the bundle is published.
"""

from __future__ import annotations

from campus_provision.errors import CampusProvisionError


class BundleError(CampusProvisionError):
    """Root of the bundle errors: raised when a bundle cannot be built, read or compared.

    Raised as itself when the output cannot be written (``--out`` exists without
    ``--force``, a full disk) or a bundle directory has no readable ``bundle.json``.
    """


class BundleSpecError(BundleError):
    """Raised when the spec asks for what no bundle can hold (exit 2, a spec problem).

    A package that does not exist in the suite, a pinned version that is not there, a
    pin or package whose dependencies cannot be met, or ``--profiles`` naming a profile
    the spec does not have. One line per package, naming the profile that asked for it.
    """

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))

    def lines(self) -> list[str]:
        return list(self.problems)


class MirrorError(BundleError):
    """Raised when the package mirror cannot be reached or a download fails or stalls."""


class BundleToolError(BundleError):
    """Raised when a host tool the bundle needs (apt-ftparchive, gpg, gpgv) is missing or fails.

    The message names the tool and, for a missing one, the Debian package that has it.
    """


__all__ = ["BundleError", "BundleSpecError", "BundleToolError", "MirrorError"]
