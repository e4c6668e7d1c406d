"""The site agent: enrolment, desired-state sync, local runtimes, autonomy while disconnected."""
