"""Verification: run the control checks against hosts and turn the outcome into evidence."""
