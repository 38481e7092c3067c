"""Tests of campus_provision.keys."""
