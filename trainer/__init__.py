"""Trainer: the Keras CNN, the KerasTuner search, run_fn and the exported signatures."""
