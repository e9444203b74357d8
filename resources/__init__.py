"""Resources: where faultline's data comes from and where its results go."""
