"""Faust plumbing: agents that decode, load state, call the decision core, store state and send."""
