"""The testinfra checks: one module per control family, one test per control.

Each test's name carries its control ID (``test_CP_NET_01_...``); pytest-testinfra
parametrizes it over the hosts, so every control × host is one item. ``verify`` runs
them with pytest over SSH; they read what to expect from the rendered inventory.
"""
