"""MRI reconstruction from Cartesian k-space.

* :mod:`.fft`       centred, orthonormal FFTs (fastMRI's convention), numpy and torch
* :mod:`.formats`   :class:`KSpace` and its readers/writers (fastMRI/ISMRMRD HDF5, BART .cfl, .npy)
* :mod:`.simulate`  the forward model: coil maps, sampling masks, noise (``recon simulate``)
* :mod:`.espirit`   ESPIRiT coil sensitivities from the calibration region
* :mod:`.methods`   zerofill, SENSE, compressed sensing (wavelet FISTA, TV primal-dual), :func:`reconstruct_mri`
* :mod:`.learned`   the unrolled network (``--method learned``) and its training data generator

Conventions: k-space is ``(slices, coils, ro, pe)`` (readout, phase encoding;
fastMRI's ``(slices, coils, rows, cols)``); undersampling is along ``pe``; the
image of slice ``k`` is voxel plane ``[:, :, k]`` of the output volume, so
voxel axes are (ro, pe, slice).
"""
