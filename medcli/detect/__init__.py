"""Focal lesion detection: findings in world millimetres, the LoG/DoG detector, a lesion generator, FROC evaluation."""
