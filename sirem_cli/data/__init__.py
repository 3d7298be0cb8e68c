"""From the real corpus layout to sirem's prepared format (``sirem prepare``)."""
