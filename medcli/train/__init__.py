"""The training engine behind ``medcli train``: synthesis, losses, the loop.

* :mod:`medcli.train.synth`   domain-randomised images from label maps (SynthSeg-style)
* :mod:`medcli.train.losses`  segmentation and regression losses, output priors
* :mod:`medcli.train.data`    per-step seeded batches and a background loader
* :mod:`medcli.train.engine`  the loop: checkpoints, resume, validation, export
"""
