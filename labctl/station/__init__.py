"""The probe station: its file (what the bench is) and its runtime (the opened instruments)."""
