"""Image reconstruction behind ``medcli recon``: raw scanner data in, images out.

* :mod:`medcli.recon.mri` -- MRI: undersampled multi-coil k-space (fastMRI/ISMRMRD HDF5,
  BART .cfl, .npy) -> zero-filled, SENSE, compressed sensing or a learned unrolled network.
* :mod:`medcli.recon.ct`  -- CT: sinograms -> FBP, iterative or learned.

The command layer (:mod:`medcli.commands.recon`) recognises the modality from
the input file; each half knows nothing of the other.
"""
