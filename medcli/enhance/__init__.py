"""Image enhancement: the pure functions behind biascorrect, denoise, harmonize and superres.

Modules (imported on demand, none at package import):

* :mod:`medcli.enhance.degrade` -- known degradations (bias, Rician noise,
  thick slices, scanner response) and the metrics that score their removal.
* :mod:`medcli.enhance.bias` -- N4 and learned bias-field correction.
* :mod:`medcli.enhance.denoise` -- noise estimation, non-local means, MP-PCA,
  learned and self-supervised denoising.
"""
