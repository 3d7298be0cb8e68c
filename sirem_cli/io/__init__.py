"""File input/output: real corpus readers and writers, sirem's own HDF5 formats."""
