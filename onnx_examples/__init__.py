"""Worked examples a miner starts from; importing a module registers it as a `kit build` source."""
