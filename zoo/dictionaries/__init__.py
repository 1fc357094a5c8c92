"""Dictionaries (sparse autoencoders) beside checkpoints: trained on a run's exact activations
at a step, stored and verified like weights, compared across steps and against ground truth.

    zoo.train_dict(name, seed=, step=, site=, kind="topk" | "relu", width=, ...)  # trains, stores
    zoo.load_dict(name, seed=, step=, site=)                                     # loads, verified
    zoo dict train | ls | export | track                                         # the same, and more
"""
