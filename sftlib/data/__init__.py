"""Data and environments: datasets, replay buffers, environments, goal data, rollouts."""
