"""Tests of campus_provision.verify."""
