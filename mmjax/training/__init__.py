"""The run loop: the train state and jitted steps (steps), the loop that trains, evaluates and
checkpoints (train), best-state selection, initialising from another run (transfer), the
checks of a config before anything is written (config_checks), and front ends computed once per
stored recording (features)."""
