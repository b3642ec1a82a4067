"""Tests of ``outpost.runtime``, the plumbing the service and the endpoint share."""
