"""The ML Metadata mark `lenspipe rollback` leaves on a Model artifact, read by the resolver and the pusher.

A rolled-back model is neither the baseline of the next run (the version actually serving is) nor
pushed again when a cached Trainer offers it as the candidate once more.
"""

ROLLED_BACK_PROPERTY = "lenspipe_rolled_back"  # int custom property: 1 = rolled back, 0 = restored by --undo
ROLLED_BACK_AT_PROPERTY = "lenspipe_rolled_back_at"  # string: when (UTC, ISO 8601)
