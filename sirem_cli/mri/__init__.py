"""MRI physics: spiral trajectories, coil sensitivities, SENSE operators."""
