"""Example weight-decay methods brought to the benchmark as plugins (see README, "Add your method")."""
