"""Anatomical landmarks (fiducials): detection and evaluation, the pure functions behind ``medcli landmarks``.

* :mod:`medcli.landmarks.sets`: landmark sets as data (a points file on a template image);
* :mod:`medcli.landmarks.atlas`: the atlas method (register the subject with the set's
  template, carry the template's points to the subject);
* :mod:`medcli.landmarks.evaluate`: radial errors between two point sets (the AFIDs "AFLE");
* :mod:`medcli.landmarks.qc`: a QC picture (each landmark on the three planes through it).
"""
