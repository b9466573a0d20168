"""Training: data sets, the MLP and its trainer, neuron backends and their records."""
