"""The agent port: enrolment, certificate rotation, desired state and status for site agents."""
