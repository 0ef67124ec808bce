"""``make bench``: speed as ratios against peers and arithmetic floors, measured in one run (``python -m
genbench.bench``, :mod:`.run`). One module per subject: :mod:`.rbm` (a PCD epoch against scikit-learn, AIS against a
matmul loop), :mod:`.vae` (−L_5000 and a VAE epoch), :mod:`.ar` (NADE, MADE, PixelCNN against their products),
:mod:`.steps` (a training step per family, flows against zuko and normflows, a table on parallel workers),
:mod:`.cli` (the command's start-up).
"""
