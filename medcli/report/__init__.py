"""Reports: what medcli measured and found in a scan (or a cohort), for people to read.

* :mod:`medcli.report.inputs`: recognise what other commands wrote (label maps,
  ``segment --stats``, sidecars, landmarks, ``detect`` findings, ``register
  --stats``) by content, and check that each belongs to the image.
* :mod:`medcli.report.build`: the report document (a plain dict, also the
  ``.json`` report): identity, volumes, findings, landmarks, provenance,
  narrative with links to its numbers, model cards.
* :mod:`medcli.report.figures`: QC mosaics (three planes, outlines, boxes,
  crosses) as compressed inline images; SVG plots for cohorts.
* :mod:`medcli.report.render`: HTML (Jinja2, self-contained), Markdown, JSON.
* :mod:`medcli.report.cohort`: the cohort table, robust outlier flags, CSV.
"""
