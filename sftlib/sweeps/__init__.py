"""Studies and sweeps: study files, plans, parameters, the sweep runner."""
