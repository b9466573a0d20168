"""Wafer characterisation: scan every die (scan.py), read the records back (records.py)."""
