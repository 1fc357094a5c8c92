"""Training-data attribution along the exact trajectory, and its check against real retraining.

`scores` walks a window of a run's steps by replay and scores every training sample of every step
on a target (zoo.attribution.trajectory); `records` stores the scores beside the run's
evaluations; `check` drops the samples the scores name and retrains the window exactly by
branches, which is the truth the scores are checked against.
"""
