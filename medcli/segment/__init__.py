"""Pure segmentation functions behind ``medcli segment`` (brain extraction, tissues, ...)."""
