"""The lab: real Debian 12 hosts on one machine, in network namespaces the lab creates.

Workstations are systemd-nspawn containers (or QEMU VMs where a kernel of their own is
needed), the campus LAN is a bridge in a namespace of its own, and an ``outside``
namespace stands in for the internet. Nothing has an address in the root namespace.
"""
