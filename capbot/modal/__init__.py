"""capbot on Modal: the deployable app (`app`) and its glue, over the same composition root as `capbot run`.

plan (names, sizes: plain data) · image (image, Volumes, Secret) · app (every Modal definition) ·
container (settings, small pool, schema check) · serving (GPU class, web endpoint) · gateway (Discord) ·
jobs (datasets, training, retraining, first models) · volumes (storage rules on Volumes) · deploy
(`capbot modal ...`). Importing this package imports nothing of Modal.
"""
