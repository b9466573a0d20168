"""`labctl paper`: the method paper's figures reproduced over seeds (experiments, table)."""
