"""Runs: one config with one seed, trained, evaluated and recorded. One module per job, the light ones first:

* :mod:`.config`: a run's config composed from Hydra overrides, every mistake in one paragraph; :mod:`.schema`: its
  numbers checked (both without torch, so a mistake is answered at once);
* :mod:`.identity`: what names a run (its slug, its config and training hashes, a user model's source);
* :mod:`.store`: run records on disk (atomic, never losing a finished one);
* :mod:`.checkpoints`: checkpoints written atomically and read safely; :mod:`.callbacks`: the Lightning callbacks
  every training runs with; :mod:`.execute`: the run itself (train or load, evaluate, record).
"""
